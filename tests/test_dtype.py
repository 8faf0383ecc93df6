"""The weights' dtype while compressing (``--dtype``; ``auto`` = bfloat16 on CUDA): every method compresses a
bfloat16 model and saves it in bfloat16, and row slicing in bfloat16 equals slicing in float32, then casting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from prunenet.cli import build_parser
from prunenet.methods import METHODS, PruneRequest
from prunenet.models import load_model, save_checkpoint

# Cheap settings per method (the tiny model has 6 layers; LLM-Pruner's defaults leave 4 + 2 of them unpruned)
CHEAP = {
    "llm-pruner": ["--llm-pruner-first", "1", "--llm-pruner-last", "1"],
    "llm-surgeon": ["--llm-surgeon-shots", "1"],
}


def _run(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer) -> Path:
    """A 6-layer random LLaMA checkpoint in float32 and one policy per policy state, trained one episode."""
    root = tmp_path_factory.mktemp("dtype")
    config = tiny_config("llama", len(tokenizer))
    config.num_hidden_layers = 6
    torch.manual_seed(0)
    save_checkpoint(AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tokenizer, root / "dense")
    head = ["train", "--model", str(root / "dense"), "--episodes", "1", "--ratio", "0.3", "--eval-samples", "2"]
    _run(head + ["--out", str(root / "ffn.safetensors"), "--meta-out", str(root / "ffn.json")])
    attention = ["--state", "qkv", "--objective", "paper", "--update", "paper"]  # the attention trainer's own
    _run(head + attention + ["--out", str(root / "qkv.safetensors"), "--meta-out", str(root / "qkv.json")])
    return root


def _prune(root: Path, method: str, dtype: str, data_dir: Path) -> Path:
    out = root / f"{method}-{dtype}"
    argv = ["prune", "--model", str(root / "dense"), "--out", str(out), "--method", method, "--ratio", "0.3"]
    argv += ["--dtype", dtype, "--data-dir", str(data_dir), "--calib-samples", "4", "--calib-seq-len", "32"]
    if METHODS.get(method).needs_policy:
        state = METHODS.get(method).policy_state
        argv += ["--policy", str(root / ("qkv" if state == "qkv" else "ffn")) + ".safetensors"]
    _run(argv + CHEAP.get(method, []))
    return out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            out |= {k: f.get_tensor(k) for k in f.keys()}
    return out


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_compresses_and_saves_in_bfloat16(method, tiny_dir, data_dir, one_thread):
    out = _prune(tiny_dir, method, "bfloat16", data_dir)
    tensors = _tensors(out)
    assert tensors and {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.bfloat16}
    model, _ = load_model(str(out), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    logits = model(torch.arange(1, 9)[None]).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("method", ["random", "prunenet"])
def test_row_pruning_in_bfloat16_equals_float32_pruning_cast(method, tiny_dir, data_dir, one_thread):
    """The rows a seeded draw or a policy keeps do not depend on the weights' dtype (the policy reads float32
    states either way), and slicing commutes with the cast: every saved tensor is the float32 run's, cast."""
    wide, narrow = (_tensors(_prune(tiny_dir, method, d, data_dir)) for d in ("float32", "bfloat16"))
    assert wide.keys() == narrow.keys()
    for name, tensor in wide.items():
        assert torch.equal(tensor.to(torch.bfloat16), narrow[name]), name


def test_auto_is_bfloat16_on_cuda_and_float32_on_the_cpu():
    """Resolved against the request's device, not the one a layer-by-layer method loads onto."""
    assert PruneRequest(ratio=0.3).weights_dtype() == torch.float32
    assert PruneRequest(ratio=0.3, device="cuda:0").weights_dtype() == torch.bfloat16
    assert PruneRequest(ratio=0.3, device="cuda", dtype="float16").weights_dtype() == torch.float16


@pytest.mark.parametrize("command", ["train", "prune", "prepare", "sweep", "evaluate", "speed", "rft"])
def test_every_model_command_refuses_an_unknown_dtype_before_loading(command, capsys):
    """One --dtype for every command that loads a model to work on (choices.DTYPES): a misspelt dtype exits 2 at
    parsing, naming the choices, before any model loads."""
    import argparse

    from prunenet.choices import DTYPES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    dtype = next(a for a in parser._actions if a.dest == "dtype")
    assert tuple(dtype.choices) == tuple(DTYPES) and dtype.default == "auto"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--dtype", "bf16"])
    assert exc.value.code == 2 and "invalid choice: 'bf16'" in capsys.readouterr().err
