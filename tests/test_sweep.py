"""The perplexity sweep prunes in memory exactly what `prunenet prune` writes."""

from __future__ import annotations

import pytest

from prunenet.data import load_texts
from prunenet.evaluation.ppl import perplexity
from prunenet.evaluation.sweep import ppl_sweep, sweep_requests
from prunenet.methods import PruneRequest, compress
from prunenet.models import load_model, save_checkpoint


@pytest.mark.parametrize("method", ["random", "slicegpt"])
def test_sweep_point_equals_the_saved_checkpoint(tmp_path, tiny_model, tokenizer, data_dir, method):
    save_checkpoint(tiny_model("llama"), tokenizer, tmp_path / "dense")
    # SliceGPT at its nominal ratio: on a budget both ratios would round to one width of this tiny model
    options = {"budget": "ratio"} if method == "slicegpt" else {}
    base = PruneRequest(ratio=0.25, seed=3, data_dir=str(data_dir), calib_samples=4, calib_seq_len=32, options=options)
    requests = sweep_requests(base, [0.25, 0.5], [])
    texts = load_texts("wikitext2", "test", data_dir)
    model, tok = load_model(str(tmp_path / "dense"), dtype="float32")
    points = ppl_sweep(model, tok, method, requests, texts, seq_len=32, max_blocks=4)
    for req, point in zip(requests, points):
        meta, _ = compress(str(tmp_path / "dense"), tmp_path / f"r{req.ratio}", method, req)
        pruned, tok2 = load_model(str(tmp_path / f"r{req.ratio}"), dtype="float32")
        assert point["ppl"] == pytest.approx(perplexity(pruned, tok2, texts, 32, 4, 8)["ppl"], rel=1e-5)
        assert point["params"] == meta["stats"]["params"]
    assert points[0]["params"] > points[1]["params"]
    # the dense model the sweep started from is untouched
    fresh, _ = load_model(str(tmp_path / "dense"), dtype="float32")
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
