"""Paper Tables 11, 12, 14 and 15: PruneNet beside SliceGPT after RFT (WikiText-2, Alpaca) and on the larger model
(without and with RFT). The tables against direct computations on planted evaluation files; what the workflow runs
for them, by dry run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_config import ROOT, dry_run, jobs, workdir  # noqa: F401 (workdir: the default config's fixture)

from prunenet.reporting import TABLES
from prunenet.reporting.paired import item_matrix, paired_bootstrap
from prunenet.reporting.specs import TableSpec, Variant
from prunenet.reporting.targets import TABLE_SPECS

TASKS = ["piqa", "arc_easy"]
N_ITEMS = {"piqa": 80, "arc_easy": 50}


def _write(path: Path, method: str, setting: str, ratio: float, rng, p_correct: float, rft: str | None) -> str:
    """A minimal evaluation JSON of one seed, after RFT on ``rft`` when given (as ``prunenet evaluate`` writes one
    of a fine-tuned checkpoint: its meta carries the RFT dataset and size)."""
    tasks = {}
    for t, n in N_ITEMS.items():
        correct = (rng.random(n) < p_correct).astype(float).tolist()
        tasks[t] = {"primary": float(np.mean(correct)), "items": {"doc_id": list(range(n)), "acc_norm": correct}}
    meta = {"stats": {"params": 1e6 * (1 - ratio), "effective_sparsity": ratio / 2}}
    meta |= {"rft_dataset": rft, "rft_samples": 64} if rft else {}
    res = {"model": "m", "method": method, "setting": setting, "ratio": ratio, "seed": 0, "limit": 80}
    res |= {
        "meta": meta,
        "tasks": tasks,
        "perplexity": {"wikitext2": {"ppl": 10 + 100 * ratio, "n_blocks": 2, "seq_len": 16}},
    }
    path.write_text(json.dumps(res))
    return str(path)


def _inputs(tmp_path: Path, rft: str | None, slicegpt: bool = True) -> tuple[str, dict[str, list[str]]]:
    """Dense, SliceGPT (reference, first) and PruneNet at 0.2 and 0.3, one seed each, as the workflow passes them."""
    rng = np.random.default_rng(0)
    dense = _write(tmp_path / "dense.json", "dense", "default", 0.0, rng, 0.7, None)
    variants: dict[str, list[str]] = {"SliceGPT": [], "PruneNet": []}
    for r in (0.2, 0.3):
        if slicegpt:
            f = _write(tmp_path / f"sg-{r}.json", "slicegpt", rft or "wikitext2", r, rng, 0.6 - r, rft)
            variants["SliceGPT"].append(f)
        variants["PruneNet"].append(_write(tmp_path / f"pn-{r}.json", "prunenet", f"ks-t{r}", r, rng, 0.6, rft))
    return dense, variants


def _accuracy(path: str, task: str) -> float:
    """A task's accuracy in points, straight from the items."""
    return 100 * float(np.mean(json.loads(Path(path).read_text())["tasks"][task]["items"]["acc_norm"]))


@pytest.mark.parametrize("table", ["table11", "table12", "table15"])
def test_an_rft_table_prints_prunenet_minus_slicegpt_per_ratio(tmp_path, table):
    dataset = "alpaca" if table == "table12" else "wikitext2"
    dense, variants = _inputs(tmp_path, dataset)
    inputs = [dense] + variants["SliceGPT"] + variants["PruneNet"]
    out, md = tmp_path / f"{table}.csv", tmp_path / f"{table}.md"
    TABLES.get(table)(inputs, str(out), str(md), tasks=TASKS, bootstrap=500, seed=0, variants=variants)
    df = pd.read_csv(out)  # 4 decimals
    assert set(df.loc[(df["row"] == "seed") & (df["method"] != "dense"), "rft"]) == {dataset}
    rows = df[df["row"] == "mean"].set_index(["ratio", "variant"])
    comps = {}
    for sg, pn in zip(variants["SliceGPT"], variants["PruneNet"]):
        r = json.loads(Path(pn).read_text())["ratio"]
        # the difference by hand: macro average over the tasks of PruneNet's accuracy minus SliceGPT's
        by_hand = np.mean([_accuracy(pn, t) - _accuracy(sg, t) for t in TASKS])
        a, b = ({t: item_matrix([json.loads(Path(f).read_text())], t, "acc_norm") for t in TASKS} for f in (pn, sg))
        comps[r] = paired_bootstrap(a, b, 500, 0)
        row = rows.loc[(r, "PruneNet")]
        assert row["vs"] == "SliceGPT" and row["avg_diff"] == pytest.approx(by_hand, abs=1e-4)
        assert (row["avg_ci_lo"], row["avg_ci_hi"], row["avg_p"]) == pytest.approx(
            (comps[r].lo, comps[r].hi, comps[r].p), abs=1e-4
        )
        assert np.isnan(rows.loc[(r, "SliceGPT"), "avg_diff"])  # the reference
    small, large = sorted(comps, key=lambda r: comps[r].p)  # Holm over the two printed differences, by hand
    holm = {small: min(1.0, 2 * comps[small].p)}
    holm[large] = min(1.0, max(holm[small], comps[large].p))
    text = md.read_text()
    for r, c in comps.items():
        assert rows.loc[(r, "PruneNet"), "avg_p_holm"] == pytest.approx(holm[r], abs=1e-4)
        verdict = "significant" if holm[r] < 0.05 else "not significant"
        assert f"m, {100 * r:g}%: PruneNet − SliceGPT = {c.diff:+.1f} [{c.lo:+.1f}, {c.hi:+.1f}], p = {c.p:.3f}, " \
            f"Holm p = {holm[r]:.3f} ({verdict};" in text  # fmt: skip
    assert "the 95 % CIs are unadjusted" in text
    assert any(holm[r] < 0.05 for r in holm)  # the planted data exercise a verdict


def test_without_slicegpt_the_larger_model_table_says_why(tmp_path):
    """Gemma-3 as the larger model (config/gemma3.yaml): SliceGPT refuses it, so Table 14 has PruneNet's rows, the
    refusal note and no comparison."""
    dense, variants = _inputs(tmp_path, None, slicegpt=False)
    note = "Not run: slicegpt on m — slicegpt refuses gemma3_text models (see docs/methods.md, SliceGPT)."
    out, md = tmp_path / "t14.csv", tmp_path / "t14.md"
    inputs = [dense] + variants["PruneNet"]
    TABLES.get("table14")(inputs, str(out), str(md), tasks=TASKS, bootstrap=500, variants=variants, notes=[note])
    rows = pd.read_csv(out).query("row == 'mean'")
    assert sorted(rows["variant"]) == ["Dense", "PruneNet", "PruneNet"]
    text = md.read_text()
    assert note in text and "No paired comparison" in text and "larger model, no RFT" in text


def test_the_specs_name_their_rft_corpus_and_model():
    assert TABLE_SPECS["table11"].needs == ("rft",) and TABLE_SPECS["table14"].needs == ("large_model",)
    assert TABLE_SPECS["table15"].needs == ("rft", "large_model") and TABLE_SPECS["table13"].needs == ()
    assert [v.rft for v in TABLE_SPECS["table12"].variants] == ["alpaca", "alpaca"]
    with pytest.raises(ValueError, match="rft 'c4'"):
        Variant("x", "prunenet", rft="c4")
    with pytest.raises(ValueError, match="models 'largest'"):
        TableSpec(models="largest")


def _rft_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "-m prunenet rft " in line]


def test_tables_11_and_12_fine_tune_both_methods_on_their_corpus(workdir):  # noqa: F811
    """The default config lists only WikiText-2 under rft.datasets: Table 12 still fine-tunes on Alpaca, SliceGPT
    calibrated on Alpaca as in the paper."""
    rc, out = dry_run(workdir, "results/tables/table11.csv", "results/tables/table12.csv")
    assert rc == 0, out
    tuned = {
        (m[1], m[2], m[3], m[4])
        for line in _rft_lines(out)
        if (m := re.search(r"/(\w+)/([\w.-]+)/r([\d.]+)-s0/(\w+)-n64 ", line))
    }
    assert {x for x in tuned if x[0] == "slicegpt"} == {
        ("slicegpt", c, r, c) for c in ("wikitext2", "alpaca") for r in ("0.2", "0.3")
    }
    assert {(r, d) for m, _, r, d in tuned if m == "prunenet"} == {
        (r, d) for r in ("0.2", "0.3") for d in ("wikitext2", "alpaca")
    }
    for line in _rft_lines(out):  # each job trains on the corpus its output path names
        corpus = re.search(r"/(\w+)-n64 ", line)[1]
        assert f"--dataset {corpus} " in line
    counts = jobs(out)
    assert counts["rft"] == 8 and counts["evaluate_rft"] == 8 and counts["table"] == 2
    report = next(line for line in out.splitlines() if "prunenet report table12 " in line)
    variants = json.loads(re.search(r"--options '(.*)'", report)[1])["variants"]
    assert list(variants) == ["SliceGPT", "PruneNet"] and all(
        "alpaca-n64.json" in f for v in variants.values() for f in v
    )


def test_tables_14_and_15_run_on_the_large_model_only(workdir):  # noqa: F811
    gemma = ["--configfile", str(ROOT / "config/gemma3.yaml")]
    rc, out = dry_run(workdir, "results/tables/table14.csv", "results/tables/table15.csv", *gemma)
    assert rc == 0, out
    lines = [line for line in out.splitlines() if "-m prunenet" in line]
    assert lines and not any("smollm2-135m" in line for line in lines)
    assert not any("slicegpt" in line for line in lines if "prunenet report" not in line)  # refused on Gemma-3
    assert {re.search(r"r([\d.]+)-s0/wikitext2-n64 ", x)[1] for x in _rft_lines(out)} == {"0.2", "0.3"}
    reports = [line for line in lines if "prunenet report" in line]
    assert len(reports) == 2 and all("Not run: slicegpt on gemma3-270m" in x for x in reports)
    rc, out = dry_run(workdir, "results/tables/table14.csv")  # the default config names no large model
    assert rc != 0 and "set large_model to a key of models" in out
    rc, out = dry_run(workdir, "results/tables/table14.csv", "--config", "large_model=llama-2-13b")
    assert rc != 0 and "large_model 'llama-2-13b' is not a key of models (smollm2-135m)" in out
