"""The prune x quantize table (llama.cpp): its speed-up interval, its rows, and the workflow target end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_workflow import snakemake, tiny_dir, write_config  # noqa: F401 (tiny_dir: a fixture)

from prunenet.errors import PruneNetError
from prunenet.reporting.quantize import quantize_frame, ratio_ci


def test_ratio_ci_is_welch_on_log_tokens_per_second():
    """Ground truth: scipy's Welch t test of the log samples, its interval exponentiated."""
    pruned, dense = [31.0, 29.5, 33.2, 30.1], [25.0, 27.9, 24.1]
    up, lo, hi = ratio_ci(pruned, dense)
    ref = stats.ttest_ind(np.log(pruned), np.log(dense), equal_var=False).confidence_interval(0.95)
    assert up == pytest.approx(math.exp(np.log(pruned).mean() - np.log(dense).mean()), rel=1e-12)
    assert (lo, hi) == pytest.approx((math.exp(ref.low), math.exp(ref.high)), rel=1e-9)


def _write(tmp_path, name: str, method: str, ratio: float, type_: str, **body) -> str:
    path = tmp_path / f"{name}.json"
    head = {"model": "m", "method": method, "setting": "x", "ratio": ratio, "seed": 0, "backend": "llamacpp"}
    path.write_text(json.dumps(head | {"dtype": type_} | body))
    return str(path)


def _speed(tok_s: float, wbytes: int) -> dict:
    return {"speed": {"cells": {"b1": {"decode_tok_s": {"median": tok_s}, "weight_bytes_per_token": wbytes}}}}


def test_quantize_frame_rows(tmp_path):
    files = []
    for method, ratio, ppl, mb, speeds, wbytes in [
        ("dense", 0.0, 20.0, 2e8, [10.0, 12.0], 1000),
        ("prunenet", 0.3, 30.0, 1.5e8, [15.0, 14.0, 16.0], 800),
    ]:
        ev = {"perplexity": {"wikitext2": {"ppl": ppl}}, "file_bytes": mb}
        files.append(_write(tmp_path, f"{method}-ev", method, ratio, "q8_0", **ev))
        for k, tok_s in enumerate(speeds):
            files.append(_write(tmp_path, f"{method}-{k}", method, ratio, "q8_0", **_speed(tok_s, wbytes)))
    df = quantize_frame(files)
    assert list(df["method"]) == ["dense", "prunenet"] and list(df["runs"]) == [2, 3]
    row = df.iloc[1]
    assert row["ppl wikitext2"] == 30.0 and row["file_mb"] == 150.0 and row["ideal_speedup"] == 1.25
    assert row["speedup"] == pytest.approx(ratio_ci([15.0, 14.0, 16.0], [10.0, 12.0])[0])
    assert row["decode_tok_s"] == pytest.approx((15.0 * 14.0 * 16.0) ** (1 / 3))
    from prunenet.reporting.summary import significance_line

    line = significance_line("quantize", df)  # the report's line: the speed-up with its interval, no verdict
    assert f"prunenet q8_0 {row['speedup']:.2f} [{row['speedup_lo']:.2f}, {row['speedup_hi']:.2f}]" in line
    with pytest.raises(PruneNetError, match="no dense q8_0"):
        quantize_frame([f for f in files if "dense" not in f])


@pytest.mark.slow
def test_quantize_target_builds_from_llama_cpp_runs(tmp_path, tiny_dir, data_dir):  # noqa: F811
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed: bash envs/install.sh llamacpp")
    write_config(
        tmp_path,
        tiny_dir,
        data_dir,
        seeds=[0],
        prune={"ratios": [0.5], "methods": ["prunenet"]},
        speed={"prompt_len": 16, "gen_len": 4, "repeats": 2},
        quantize={"methods": ["prunenet"], "ratio": 0.5, "types": ["q8_0"], "rounds": 2},
    )
    res = snakemake(tmp_path, "results/tables/quantize.csv")
    assert res.returncode == 0, res.stderr[-4000:]
    df = pd.read_csv(tmp_path / "results/tables/quantize.csv")
    assert list(zip(df["method"], df["type"])) == [("dense", "q8_0"), ("prunenet", "q8_0")]
    assert (df["runs"] == 2).all() and (df["ppl wikitext2"] > 1).all()
    pruned = df[df["method"] == "prunenet"]
    assert (pruned["ideal_speedup"] > 1).all() and (pruned["speedup_lo"] <= pruned["speedup"]).all()
    assert df[df["method"] == "dense"].iloc[0]["speedup"] == pytest.approx(1.0)  # dense against its own runs
    assert "decode × [95 % CI]" in (tmp_path / "results/tables/quantize.md").read_text()


def test_table9_gains_llama_cpp_columns(tmp_path):
    """With llama.cpp runs among its inputs (speed.llamacpp), Table 9's batch-1 rows get their speed-up."""
    from test_speed import _speed_json, tiny

    from prunenet.reporting import REPORTS
    from prunenet.slicing import plan_rows, prune_ffn

    dense, _ = _speed_json(tmp_path, "dense", tiny(), "dense", 0.0, {})
    pruned_model = tiny()
    prune_ffn(pruned_model, plan_rows(pruned_model, "random", 0.5, seed=0))
    pruned, _ = _speed_json(tmp_path, "pruned", pruned_model, "prunenet", 0.5, {"compress_seconds": 1.0})
    ll = [_write(tmp_path, f"d{k}", "dense", 0.0, "q8_0", **_speed(s, 1000)) for k, s in enumerate([10.0, 11.0])]
    ll += [_write(tmp_path, f"p{k}", "prunenet", 0.5, "q8_0", **_speed(s, 800)) for k, s in enumerate([13.0, 14.0])]
    for path in ll:  # the llama.cpp speed files name their checkpoint as the PyTorch ones do
        run = json.loads(open(path).read()) | {"model": "tiny", "setting": "default"}
        open(path, "w").write(json.dumps(run))
    written = REPORTS["table9"]([str(dense), str(pruned), *ll], tmp_path / "t9.csv", tmp_path / "t9.md")
    df = pd.read_csv(written[0])
    b1 = df[(df.method == "prunenet") & (df.batch_size == 1)].iloc[0]
    assert b1["llamacpp_speedup"] == pytest.approx(ratio_ci([13.0, 14.0], [10.0, 11.0])[0], rel=1e-3)
    assert b1["llamacpp_ideal_speedup"] == pytest.approx(1.25)
    assert df[df.batch_size == 2]["llamacpp_speedup"].isna().all()  # llama.cpp is measured at batch 1 only
    assert "(c) llama.cpp, q8_0, batch 1" in (tmp_path / "t9.md").read_text()
