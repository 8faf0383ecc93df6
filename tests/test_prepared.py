"""A method's ratio-independent stage (``prunenet prepare`` / ``prune --prepared``): reusing it changes nothing.

Ground truth is the method computing everything itself: the checkpoint pruned from a prepared file must hold the
same tensors, bit for bit, and a file computed for any other request must be refused before a model loads.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from prunenet.cli import main
from prunenet.errors import PruneNetError
from prunenet.evaluation.sweep import ppl_sweep
from prunenet.methods import METHODS, PruneRequest, compress
from prunenet.methods.pipeline import apply, check
from prunenet.methods.prepared import check_prepared, fingerprint, save_prepared
from prunenet.models import load_model, save_checkpoint

PREPARED = [name for name, m in METHODS.items() if m.prepare is not None]


def _request(data_dir, ratio=0.3, **kw) -> PruneRequest:
    return PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=4, calib_seq_len=32, seed=1, **kw)


def _prepare(src, out, name: str, request: PruneRequest) -> None:
    """What ``prunenet prepare`` does, in process."""
    model, tok = load_model(str(src), dtype="float32")
    method = METHODS.get(name)
    save_prepared(out, method.prepare(model, tok, request), fingerprint(method, request, src), seconds=12.5)


def test_the_methods_with_a_ratio_independent_stage():
    assert PREPARED == ["shortgpt", "asvd"]


@pytest.mark.parametrize("name", PREPARED)
@pytest.mark.parametrize("family", ["llama", "opt"])
def test_pruning_from_a_prepared_file_is_bit_identical(tmp_path, tiny_model, tokenizer, data_dir, name, family):
    src = tmp_path / "dense"
    save_checkpoint(tiny_model(family), tokenizer, src)
    base = _request(data_dir, options={"sens_seq_len": 8} if name == "asvd" else {})
    _prepare(src, tmp_path / "state.safetensors", name, replace(base, ratio=None))
    for ratio in (0.2, 0.4):
        own, _ = compress(str(src), tmp_path / f"own{ratio}", name, replace(base, ratio=ratio))
        req = check(name, replace(base, ratio=ratio, prepared=str(tmp_path / "state.safetensors")), src)
        reused, _ = compress(str(src), tmp_path / f"reused{ratio}", name, req)
        a, _ = load_model(str(tmp_path / f"own{ratio}"), dtype="float32")
        b, _ = load_model(str(tmp_path / f"reused{ratio}"), dtype="float32")
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
        timing = {"compress_seconds", "score_seconds", "stage_seconds", "prepare_seconds", "peak_memory_mb"}
        assert {k: v for k, v in own.items() if k not in timing} == {k: v for k, v in reused.items() if k not in timing}
        assert reused["prepare_seconds"] == 12.5 and reused["compress_seconds"] >= 12.5  # Table 9 counts it


@pytest.mark.parametrize("name", PREPARED)
def test_a_sweep_prepares_once_and_gives_the_same_points(tmp_path, tiny_model, tokenizer, data_dir, name):
    model, tok = tiny_model("llama"), tokenizer
    base = _request(data_dir, options={"sens_seq_len": 8} if name == "asvd" else {})
    texts = ["The quick brown fox jumps over the lazy dog. " * 40]
    calls = []
    method = METHODS.get(name)
    prepare = method.prepare

    def counting(*args):
        calls.append(1)
        return prepare(*args)

    object.__setattr__(method, "prepare", counting)  # frozen dataclass: count the calls of the real stage
    try:
        points = ppl_sweep(model, tok, name, [replace(base, ratio=r) for r in (0.2, 0.4)], texts, 32, 2)
    finally:
        object.__setattr__(method, "prepare", prepare)
    assert len(calls) == 1
    for point in points:
        pruned, _ = apply(method, copy.deepcopy(model), tok, replace(base, ratio=point["ratio"]))
        assert sum(p.numel() for p in pruned.parameters()) == point["params"]


def test_a_prepared_file_for_another_request_is_refused(tmp_path, tiny_model, tokenizer, data_dir):
    src = tmp_path / "dense"
    save_checkpoint(tiny_model("llama"), tokenizer, src)
    method, base = METHODS.get("asvd"), _request(data_dir, options={"sens_seq_len": 8})
    path = tmp_path / "state.safetensors"
    _prepare(src, path, "asvd", base)
    assert check_prepared(path, method, base, src).seconds == 12.5  # the same request: accepted, read once
    for other, what in [
        (replace(base, seed=2), "seed"),
        (replace(base, calib_samples=8), "calib_samples"),
        (replace(base, options={"sens_seq_len": 8, "alpha": 1.0}), "options"),
    ]:
        with pytest.raises(PruneNetError, match=what):
            check_prepared(path, method, other, src)
    with pytest.raises(PruneNetError, match="source"):
        check_prepared(path, method, base, tmp_path)
    with pytest.raises(PruneNetError, match="method"):
        check_prepared(path, METHODS.get("shortgpt"), base, src)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    for bad, what in [
        ("missing.safetensors", "no such file"),
        ("foreign.safetensors", "not written by"),
        ("text.safetensors", "not a safetensors"),
    ]:
        with pytest.raises(PruneNetError, match=what):
            check_prepared(tmp_path / bad, method, base, src)
    with pytest.raises(PruneNetError, match="no ratio-independent stage"):
        check("random", replace(base, prepared=str(path)), src)


def test_prune_refuses_a_mismatched_prepared_file_before_loading(tmp_path, tiny_model, tokenizer, data_dir, capsys):
    """The CLI: exit 2 with one line naming the mismatch and the fix, nothing written."""
    src = tmp_path / "dense"
    save_checkpoint(tiny_model("llama"), tokenizer, src)
    path = tmp_path / "state.safetensors"
    _prepare(src, path, "shortgpt", _request(data_dir))
    args = ["prune", "--method", "shortgpt", "--model", str(src), "--ratio", "0.2", "--out", str(tmp_path / "out")]
    args += ["--data-dir", str(data_dir), "--calib-samples", "4", "--calib-seq-len", "32", "--prepared", str(path)]
    capsys.readouterr()
    assert main(args + ["--seed", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed" in err[0] and "prunenet prepare" in err[0]
    assert not (tmp_path / "out").exists()


def test_options_are_validated_before_any_model_loads(data_dir):
    """ASVD's sensitivity windows and LaCo's walk need no model to be found wrong."""
    with pytest.raises(PruneNetError, match="sens-samples"):
        METHODS.get("asvd").check(_request(data_dir, options={"sens_samples": 5}))
    with pytest.raises(PruneNetError, match="ratios"):
        METHODS.get("asvd").check(_request(data_dir, options={"ratios": "0.5,2"}))
    for bad, what in [({"merge": 1}, "merge"), ({"interval": 0}, "interval"), ({"threshold_step": 0.0}, "step")]:
        with pytest.raises(PruneNetError, match=what):
            METHODS.get("laco").check(_request(data_dir, options=bad))
