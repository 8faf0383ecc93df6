"""GGUF export: what llama.cpp reads, checked against the PyTorch model.

Ground truth without llama.cpp: transformers' own GGUF reader (which undoes llama.cpp's rotary row order) must
give back the exported uniform model's logits and tokenizer exactly; a ``deci`` file's per-layer arrays must equal
the modules' shapes. With llama.cpp (llama-cpp-python; ``bash envs/install.sh llamacpp``): the f32 GGUF of a tiny
LLaMA with per-layer FFN widths and KV heads gives next-token logits equal to PyTorch's within 1e-3.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunenet import cli
from prunenet import export as gx
from prunenet.checkpoints import low_rank, per_layer_shapes
from prunenet.lowrank.layers import apply_ranks
from prunenet.models import load_model, save_checkpoint

WIDTHS, KV = [32, 96, 0], [1, 2, 1]  # layer 2 loses its whole FFN (deci: width 0)


def _model(vocab: int, family: str = "llama") -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(copy.deepcopy(tiny_config(family, vocab)), dtype=torch.float32).eval()


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g) + (1.0 if p.ndim == 1 else 0.0))
    return model


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    return AutoTokenizer.from_pretrained(str(smollm2_dir))


@pytest.fixture(scope="module")
def per_layer(tok, tmp_path_factory):
    model = _model(len(tok))
    per_layer_shapes.resize_ffn(model, WIDTHS)
    per_layer_shapes.resize_attention(model, KV)
    per_layer_shapes.mark(model, WIDTHS)
    per_layer_shapes.mark_heads(model, KV)
    return save_checkpoint(_randomize(model), tok, tmp_path_factory.mktemp("x") / "per-layer")


def _ids(n: int = 12) -> list[int]:
    return torch.randint(0, 49152, (n,), generator=torch.Generator().manual_seed(0)).tolist()


def _read_back(path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def test_uniform_export_reads_back_exactly_through_transformers(tok, tmp_path):
    src = save_checkpoint(_randomize(_model(len(tok))), tok, tmp_path / "plain")
    summary = gx.export(gx.plan(src, "f32"), tmp_path / "m.gguf")
    assert summary["arch"] == "llama" and summary["fallbacks"] == {}
    reference, _ = load_model(str(src), dtype="float32")
    ids = torch.tensor([_ids()])
    with torch.no_grad():
        assert torch.equal(_read_back(tmp_path / "m.gguf")(ids).logits, reference(ids).logits)
    back = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="m.gguf")
    text = "Pruned models, 2025: it's 3x smaller!"
    assert back(text)["input_ids"] == tok(text)["input_ids"]


def test_per_layer_shapes_become_deci_arrays(per_layer, tmp_path):
    import gguf

    summary = gx.export(gx.plan(per_layer, "f16"), tmp_path / "m.gguf")
    assert summary["arch"] == "deci" and summary["layers"] == 3
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    groups = 2  # tiny config: 4 query heads over 2 KV heads
    assert field("deci.feed_forward_length") == [32, 96, 1]  # a removed FFN is one zero row (see layer_shapes)
    assert field("deci.attention.head_count_kv") == KV
    assert field("deci.attention.head_count") == [k * groups for k in KV]
    shapes = {t.name: list(t.shape) for t in reader.tensors}  # GGUF lists the row length first
    assert shapes["blk.0.ffn_up.weight"] == [64, 32] and shapes["blk.2.ffn_down.weight"] == [1, 64]
    assert shapes["blk.0.attn_k.weight"] == [64, 16] and shapes["blk.1.attn_q.weight"] == [64, 64]
    assert {t.name: t.tensor_type.name for t in reader.tensors}["blk.0.ffn_up.weight"] == "F16"


def test_merged_low_rank_exports_the_product(tok, tmp_path):
    model = _model(len(tok))
    ranks = {"model.layers.0.self_attn.q_proj": 8, "model.layers.2.mlp.down_proj": 5}
    apply_ranks(model, ranks)
    low_rank.mark(model, ranks)
    src = save_checkpoint(_randomize(model), tok, tmp_path / "lr")
    with pytest.raises(gx.PruneNetError, match="--merge-low-rank"):
        gx.plan(src, "f32")
    summary = gx.export(gx.plan(src, "f32", merge_low_rank=True), tmp_path / "m.gguf")
    assert summary["merged_low_rank"] == 2 and summary["arch"] == "llama"
    reference, _ = load_model(str(src), dtype="float32")
    ids = torch.tensor([_ids()])
    with torch.no_grad():  # u @ v and x @ v.T @ u.T round differently in float32: ~1e-5 on logits of size ~10
        torch.testing.assert_close(
            _read_back(tmp_path / "m.gguf")(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-5
        )


def test_refusals_are_one_line_before_any_weight_loads(tok, tmp_path, capsys, monkeypatch):
    """Checkpoints with a config.json and a tokenizer but no weights: the refusal must come from the config alone."""

    def bare(name: str, **config) -> str:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "llama"} | config))
        tok.save_pretrained(str(d))
        return str(d)

    cases = {
        bare("sliced", prunenet_slicegpt={"family": "llama"}): "SliceGPT",
        bare("factored", prunenet_low_rank={"model.layers.0.mlp.up_proj": 4}): "--merge-low-rank",
        bare("opt", model_type="opt"): "LLaMA family",
    }
    for path, reason in cases.items():
        assert cli.main(["export", path, "--type", "f32", "--out", str(tmp_path / "o.gguf")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and reason in err
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # not installed
    assert cli.main(["export", bare("plain"), "--type", "q8_0", "--out", str(tmp_path / "o.gguf")]) == 2
    assert "envs/install.sh llamacpp" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def _llama_cpp():
    """Skipped where llama-cpp-python is missing (the README's test command installs it: docs/export.md)."""
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed: bash envs/install.sh llamacpp")


def test_llama_cpp_logits_equal_pytorch_on_per_layer_shapes(per_layer, tmp_path):
    llama_cpp = _llama_cpp()
    gx.export(gx.plan(per_layer, "f32"), tmp_path / "m.gguf")
    # an f32 KV cache (llama.cpp's default is f16, ~1e-2 off on these logits): the file is checked, not the cache
    f32 = dict(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    llm = llama_cpp.Llama(str(tmp_path / "m.gguf"), n_ctx=64, logits_all=True, n_threads=1, verbose=False, **f32)
    ids = _ids()
    llm.eval(ids)
    got = torch.tensor(llm.scores[: len(ids)])
    model, _ = load_model(str(per_layer), dtype="float32")
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("type_", ["q8_0", "q4_k_m"])
def test_quantized_export_names_its_fallbacks(per_layer, tmp_path, type_):
    _llama_cpp()
    summary = gx.export(gx.plan(per_layer, type_), tmp_path / "m.gguf")
    types = gx.tensor_types(tmp_path / "m.gguf")
    if type_ == "q8_0":  # rows of 64, 32, 96 are multiples of q8_0's 32; the removed FFN's zero row is not quantized
        assert types["blk.0.ffn_up.weight"] == "Q8_0" and types["blk.1.ffn_down.weight"] == "Q8_0"
        assert summary["fallbacks"] == {"ffn_down": {"F16": 1}, "ffn_gate": {"F32": 1}, "ffn_up": {"F32": 1}}
    else:  # no row here is a multiple of 256: every k-quant falls back, and the summary says to what, by kind
        blk = {n: t for n, t in types.items() if n.startswith("blk.") and not n.endswith("norm.weight")}
        assert not {"Q4_K", "Q6_K"} & set(blk.values())
        assert sum(sum(c.values()) for c in summary["fallbacks"].values()) == len(blk)


def test_weight_bytes_per_token_count_every_weight_once(per_layer, tmp_path):
    """f32, tied head: every parameter is read once per token (4 bytes each), plus the zero row of the removed FFN."""
    from prunenet.speed_llamacpp import weight_bytes_per_token

    gx.export(gx.plan(per_layer, "f32"), tmp_path / "m.gguf")
    model, _ = load_model(str(per_layer), dtype="float32")
    hidden = model.config.hidden_size
    assert weight_bytes_per_token(tmp_path / "m.gguf") == 4 * (sum(p.numel() for p in model.parameters()) + 3 * hidden)


def test_speed_cli_measures_the_gguf_in_llama_cpp(per_layer, tmp_path):
    _llama_cpp()
    gx.export(gx.plan(per_layer, "q8_0"), tmp_path / "m.gguf")
    out = tmp_path / "speed.json"
    args = ["speed", "--backend", "llamacpp", "--model", str(tmp_path / "m.gguf"), "--out", str(out)]
    assert cli.main([*args, "--prompt-len", "16", "--gen-len", "4", "--repeats", "2", "--method", "x"]) == 0
    result = json.loads(out.read_text())
    cell = result["speed"]["cells"]["b1"]
    assert result["backend"] == "llamacpp" and result["dtype"] == "q8_0" and list(result["speed"]["cells"]) == ["b1"]
    assert len(cell["decode_tok_s"]["values"]) == 2 and min(cell["decode_tok_s"]["values"]) > 0
    assert cell["prefill_tok_s"]["median"] > 0
    assert cli.main(["speed", "--backend", "llamacpp", "--model", str(per_layer), "--out", str(out)]) == 2


def test_block_nll_equals_cross_entropy():
    """llama.cpp's logits are scored by a numpy log-softmax; ground truth: torch's cross-entropy."""
    from prunenet.evaluation.ppl_llamacpp import block_nll

    g = torch.Generator().manual_seed(0)
    logits, ids = 30 * torch.randn(9, 50, generator=g), torch.randint(0, 50, (9,), generator=g)
    expected = torch.nn.functional.cross_entropy(logits[:-1].double(), ids[1:]).item()
    assert block_nll(logits.numpy(), ids.tolist()) == pytest.approx(expected, rel=1e-12)


def test_llama_cpp_perplexity_equals_pytorch_on_the_same_blocks(per_layer, tmp_path, data_dir):
    """f32 weights and KV cache: llama.cpp gives PyTorch's per-block NLL on the pipeline's blocks."""
    _llama_cpp()
    from prunenet.data import load_texts
    from prunenet.evaluation.ppl import perplexity
    from prunenet.evaluation.ppl_llamacpp import perplexities_gguf

    gx.export(gx.plan(per_layer, "f32"), tmp_path / "m.gguf")
    model, tok = load_model(str(per_layer), dtype="float32")
    expected = perplexity(model, tok, load_texts("wikitext2", "test", data_dir), 32, 3)
    got = perplexities_gguf(tmp_path / "m.gguf", per_layer, ["wikitext2"], data_dir, 32, 3, cache_type="f32")
    got = got["wikitext2"]
    assert got["n_blocks"] == 3 and got["n_tokens"] == expected["n_tokens"]
    assert got["block_nll"] == pytest.approx(expected["block_nll"], abs=1e-4)
    assert got["ppl"] == pytest.approx(expected["ppl"], rel=1e-4)


def test_evaluate_cli_computes_perplexity_in_llama_cpp(per_layer, tmp_path, data_dir):
    _llama_cpp()
    gx.export(gx.plan(per_layer, "f16"), tmp_path / "m.gguf")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--backend", "llamacpp", "--model", str(tmp_path / "m.gguf"), "--out", str(out)]
    args += ["--data-dir", str(data_dir), "--ppl-seq-len", "32", "--ppl-blocks", "2"]
    assert cli.main([*args, "--tasks"]) == 2 and not out.exists()  # no --tokenizer: refused before any work
    args += ["--tokenizer", str(per_layer)]
    assert cli.main([*args, "--tasks", "piqa"]) == 2 and not out.exists()  # perplexity only
    assert cli.main([*args, "--tasks"]) == 0
    result = json.loads(out.read_text())
    assert result["backend"] == "llamacpp" and result["dtype"] == "f16"
    assert result["file_bytes"] == (tmp_path / "m.gguf").stat().st_size
    ppl = result["perplexity"]["wikitext2"]
    assert ppl["n_blocks"] == 2 and ppl["cache_type"] == "f16" and ppl["ppl"] > 1
