"""Paired perplexity under the comparison tables against direct computations on planted per-block NLLs: the ratio
is exp of the mean log-perplexity difference over blocks × seeds, a planted ratio is found and called significant,
a null one is not, and evaluations without per-block data still build the table and say so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_ablations import TASKS, _write

from prunenet.reporting import TABLES
from prunenet.reporting.comparisons import comparisons_frame
from prunenet.reporting.multiplicity import holm
from prunenet.reporting.ppl_pairs import NO_BLOCKS, ppl_pairs_frame

BLOCKS = 40


def _with_blocks(path: str, nll: np.ndarray) -> str:
    """The evaluation at ``path`` with per-block NLLs on WikiText-2 (and its perplexity their exp-mean)."""
    res = json.loads(Path(path).read_text())
    res["perplexity"]["wikitext2"] |= {
        "block_nll": nll.tolist(),
        "n_blocks": len(nll),
        "ppl": float(np.exp(nll.mean())),
    }
    Path(path).write_text(json.dumps(res))
    return path


@pytest.fixture
def planted(tmp_path):
    """Dense, PruneNet (3 seeds) at 1.5× dense's perplexity per block, random rows (3 seeds) at dense's."""
    rng = np.random.default_rng(0)
    base = rng.uniform(2.5, 4.0, BLOCKS)  # per-block log-perplexity of dense
    files = {"dense": [_with_blocks(_write(tmp_path / "d.json", "dense", "default", 0.0, None, rng, 0.7), base)]}
    for method, shift in (("prunenet", np.log(1.5)), ("random", 0.0)):
        files[method] = [
            _with_blocks(
                _write(tmp_path / f"{method}{s}.json", method, "default", 0.2, s, rng, 0.6),
                base + shift + rng.normal(0, 0.05, BLOCKS),
            )
            for s in range(3)
        ]
    return files


def test_the_ratio_is_the_exp_mean_log_perplexity_difference_and_holm_adjusts_it(planted):
    results = [json.loads(Path(f).read_text()) | {"source": f} for fs in planted.values() for f in fs]
    avg = comparisons_frame(results, TASKS, iters=300)
    avg = avg[avg["task"] == "avg"]
    df = ppl_pairs_frame(results, avg, iters=2000).set_index(["a", "b"])
    nll = {
        m: np.array([r["perplexity"]["wikitext2"]["block_nll"] for r in results if r["method"] == m]) for m in planted
    }
    for a, b in (("prunenet", "dense"), ("random", "dense"), ("prunenet", "random")):
        row = df.loc[(a, b)]
        assert row["ppl_ratio"] == pytest.approx(np.exp(nll[a].mean() - nll[b].mean()))
        assert row["ci_lo"] <= row["ppl_ratio"] <= row["ci_hi"] and row["blocks"] == BLOCKS
        # paired by block: the CI's width is the per-block differences' standard error, not the blocks' spread
        d = nll[a].mean(axis=0) - nll[b].mean(axis=0)
        se = (np.log(row["ci_hi"]) - np.log(row["ci_lo"])) / (2 * 1.96)
        assert se == pytest.approx(d.std() / np.sqrt(BLOCKS), rel=0.3)
    assert df.loc[("prunenet", "dense"), "ppl_ratio"] == pytest.approx(1.5, rel=0.02)
    assert df.loc[("prunenet", "dense"), "significant"] and not df.loc[("random", "dense"), "significant"]
    assert df["p_holm"].tolist() == pytest.approx(list(holm(df["p"])))


def test_the_table_prints_the_ratios_and_old_evaluations_say_there_are_no_blocks(planted, tmp_path):
    inputs = [f for fs in planted.values() for f in fs]
    out, md = tmp_path / "t2.csv", tmp_path / "t2.md"
    TABLES.get("table2")(inputs, str(out), str(md), tasks=TASKS, bootstrap=300)
    text = md.read_text()
    assert "### Paired perplexity (ratio A / B on the same test blocks)" in text
    shown = re.search(r"\| prunenet \| dense \| wikitext2 \| ([\d.]+) \|", re.sub(" +", " ", text))
    assert float(shown[1]) == pytest.approx(1.5, rel=0.02) and NO_BLOCKS not in text
    for f in inputs:  # as written before block_nll existed
        res = json.loads(Path(f).read_text())
        del res["perplexity"]["wikitext2"]["block_nll"]
        Path(f).write_text(json.dumps(res))
    TABLES.get("baselines")(inputs, str(out), str(md), tasks=TASKS, bootstrap=300)
    assert NO_BLOCKS in md.read_text()
