"""Pruned checkpoints load with stock transformers (``trust_remote_code=True``) where prunenet is not importable.

Ground truth: ``prunenet.models.load_model``'s logits on the same checkpoint (the format's own loader). Each format
is a tiny random LLaMA (per-layer FFN widths + KV heads, low-rank factors, SliceGPT at 0.25); the stock load runs
in a subprocess whose import system refuses ``prunenet``. lm-eval's stock ``hf`` model and peft's LoRA are run on
the remote-code model in this process.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunenet import hf_code
from prunenet import slicegpt as sg
from prunenet.checkpoints import low_rank, per_layer_shapes
from prunenet.lowrank.layers import apply_ranks
from prunenet.models import load_model, save_checkpoint

FORMATS = ["per-layer-shapes", "low-rank", "slicegpt"]
RANKS = {"model.layers.0.self_attn.q_proj": 8, "model.layers.2.mlp.down_proj": 5}

# Runs in a fresh interpreter: prunenet cannot be imported, the checkpoints load through their own code only.
STOCK = """
import sys, torch
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prunenet":
            raise ImportError("prunenet must not be imported")
sys.meta_path.insert(0, Refuse())
from transformers import AutoModelForCausalLM
ids = torch.load(sys.argv[1])
for path in sys.argv[2:]:
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.save(model(ids).logits, path + ".stock.pt")
assert "prunenet" not in sys.modules
"""


def _random_weights(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _build(fmt: str, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(copy.deepcopy(tiny_config("llama", vocab)), dtype=torch.float32).eval()
    if fmt == "per-layer-shapes":
        per_layer_shapes.resize_ffn(model, [32, 96, 48])
        per_layer_shapes.resize_attention(model, [1, 2, 1])
        per_layer_shapes.mark(model, [32, 96, 48])
        per_layer_shapes.mark_heads(model, [1, 2, 1])
        return _random_weights(model)
    if fmt == "low-rank":
        apply_ranks(model, RANKS)
        low_rank.mark(model, RANKS)
        return _random_weights(model)
    calib = torch.randint(0, vocab, (4, 16), generator=torch.Generator().manual_seed(2))
    return sg.slice_model(_random_weights(model), None, 0.25, calib, progress=False)


@pytest.fixture(scope="module")
def checkpoints(smollm2_dir, tmp_path_factory) -> dict[str, Path]:
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    root = tmp_path_factory.mktemp("hf_code")
    out = {fmt: save_checkpoint(_build(fmt, len(tok)), tok, root / fmt) for fmt in FORMATS}
    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok)), dtype=torch.float32)
    out["plain"] = save_checkpoint(plain, tok, root / "plain")
    return out


def _ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(0))


def test_every_format_loads_in_a_python_without_prunenet(checkpoints, tmp_path):
    ids = _ids(49152)
    torch.save(ids, tmp_path / "ids.pt")
    paths = [str(checkpoints[f]) for f in FORMATS]
    # -I: no PYTHONPATH, no user site; the stock interpreter of this environment
    subprocess.run([sys.executable, "-I", "-c", STOCK, str(tmp_path / "ids.pt"), *paths], check=True, cwd=tmp_path)
    for fmt in FORMATS:
        reference, _ = load_model(str(checkpoints[fmt]), dtype="float32")
        with torch.no_grad():
            expected = reference(ids).logits
        torch.testing.assert_close(torch.load(f"{checkpoints[fmt]}.stock.pt"), expected, atol=1e-6, rtol=0)


def test_uniform_checkpoints_stay_plain_and_code_is_only_attached_where_needed(checkpoints):
    plain = json.loads((checkpoints["plain"] / "config.json").read_text())
    assert "auto_map" not in plain and not any((checkpoints["plain"] / f).exists() for f in hf_code.FILES)
    for fmt in FORMATS:
        config = json.loads((checkpoints[fmt] / "config.json").read_text())
        assert config["auto_map"] == hf_code.auto_map("llama")
        assert all((checkpoints[fmt] / f).read_bytes() == (hf_code.HERE / f).read_bytes() for f in hf_code.FILES)
    assert hf_code.auto_map("opt") is None  # no code for families outside the LLaMA layout: load_model reads them


def test_lm_eval_hf_model_scores_the_remote_code_model(checkpoints):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    path = checkpoints["per-layer-shapes"]
    lm = HFLM(pretrained=str(path), trust_remote_code=True, batch_size=1, device="cpu", dtype="float32")
    assert type(lm.model).__name__ == "PrunedLlamaForCausalLM"
    context, continuation = "The cat sat on", " the mat"
    request = Instance("loglikelihood", {}, (context, continuation), 0)
    ((got, _),) = lm.loglikelihood([request], disable_tqdm=True)
    model, tok = load_model(str(path), dtype="float32")
    ctx, cont = tok(context)["input_ids"], tok(continuation)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]
    expected = sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_peft_lora_trains_and_reloads_on_the_remote_code_model(checkpoints, fmt, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    load = lambda: AutoModelForCausalLM.from_pretrained(  # noqa: E731
        str(checkpoints[fmt]), trust_remote_code=True, dtype=torch.float32
    ).eval()
    ids = _ids(49152)
    with torch.no_grad():
        base = load()(ids).logits
    model = get_peft_model(load(), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, base, atol=0, rtol=0)  # LoRA's B starts at zero
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(ids, labels=ids).loss.backward()
    opt.step()
    with torch.no_grad():
        tuned = model(ids).logits
    assert (tuned - base).abs().max() > 1e-4
    model.save_pretrained(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(load(), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, tuned, atol=1e-6, rtol=0)
