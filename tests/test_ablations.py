"""The ablation tables (paper Tables 7, 10, 13, 16-19) against direct computations on planted evaluation files,
and the seeded per-layer schedule of Table 7. The workflow's variants: tests/test_config.py (dry run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunenet.errors import PruneNetError
from prunenet.ratios import RatioSpec
from prunenet.reporting import TABLES
from prunenet.reporting.paired import item_matrix, paired_bootstrap

TASKS = ["piqa", "arc_easy"]
METRIC = {"piqa": "acc_norm", "arc_easy": "acc_norm"}


def layer_ratios(text: str, num_layers: int) -> list[float]:
    return RatioSpec.parse(text).per_layer(num_layers)


def _write(path: Path, method, setting, ratio, seed, rng, p_correct, layer_ratios_=None) -> str:
    """A minimal evaluation JSON: per-item correctness for two tasks, perplexity, parameter stats."""
    tasks = {}
    for t, n in (("piqa", 80), ("arc_easy", 50)):
        correct = (rng.random(n) < p_correct).astype(float).tolist()
        tasks[t] = {
            "primary": float(np.mean(correct)),
            "primary_stderr": 0.05,
            "items": {"doc_id": list(range(n)), METRIC[t]: correct},
        }
    meta = {"stats": {"params": 1e6 * (1 - ratio), "effective_sparsity": ratio / 2}}
    if layer_ratios_:
        meta |= {"layer_ratios": layer_ratios_, "ratio_spec": "shuffled:0:0.4"}
    res = {
        "model": "m",
        "method": method,
        "setting": setting,
        "ratio": ratio,
        "seed": seed,
        "limit": 80,
        "meta": meta,
        "tasks": tasks,
        "perplexity": {"wikitext2": {"ppl": 10 + 100 * ratio + (seed or 0), "n_blocks": 2, "seq_len": 16}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return str(path)


@pytest.fixture
def table18_inputs(tmp_path):
    rng = np.random.default_rng(0)
    dense = _write(tmp_path / "dense.json", "dense", "default", 0.0, None, rng, 0.7)
    variants = {"KS": [], "AD": []}
    for label, penalty, p in (("KS", "ks", 0.6), ("AD", "ad", 0.45)):
        for r in (0.2, 0.3):
            for s in range(3):
                f = tmp_path / f"{penalty}-r{r}-s{s}.json"
                variants[label].append(_write(f, "prunenet", f"{penalty}-up-paper-t{r}", r, s, rng, p - r / 4))
    return dense, variants


def _mean_rows(csv: str) -> pd.DataFrame:
    df = pd.read_csv(csv)
    return df[df["row"] == "mean"].set_index(["ratio", "variant"])


def test_an_ablation_table_is_the_mean_of_its_variants_and_their_paired_difference(tmp_path, table18_inputs):
    dense, variants = table18_inputs
    inputs = [dense] + [f for fs in variants.values() for f in fs]
    out, md = tmp_path / "t18.csv", tmp_path / "t18.md"
    TABLES.get("table18")(inputs, str(out), str(md), tasks=TASKS, bootstrap=500, seed=0, variants=variants)
    rows = _mean_rows(out)
    loaded = {f: json.loads(Path(f).read_text()) for f in inputs}
    for label, files in variants.items():
        for r in (0.2, 0.3):
            runs = [loaded[f] for f in files if loaded[f]["ratio"] == r]
            for t in TASKS:  # mean over seeds of the task's accuracy, ×100
                expect = 100 * np.mean([x["tasks"][t]["primary"] for x in runs])
                assert rows.loc[(r, label), t] == pytest.approx(expect, abs=1e-4)
            assert rows.loc[(r, label), "seeds"] == 3
    assert rows.loc[(0.0, "Dense"), "piqa"] == pytest.approx(100 * loaded[dense]["tasks"]["piqa"]["primary"], 1e-6)
    # AD rows carry the paired difference from the reference (KS), recomputed here from the items
    comps = {}
    for r in (0.2, 0.3):
        ks = [loaded[f] for f in variants["KS"] if loaded[f]["ratio"] == r]
        ad = [loaded[f] for f in variants["AD"] if loaded[f]["ratio"] == r]
        a = {t: item_matrix(ad, t, METRIC[t]) for t in TASKS}
        b = {t: item_matrix(ks, t, METRIC[t]) for t in TASKS}
        comps[r] = paired_bootstrap(a, b, 500, 0)
    # Holm over the two differences the table prints, by hand: the smaller p ×2, the larger ×1 (not below it)
    small, large = sorted(comps, key=lambda r: comps[r].p)
    holm = {small: min(1.0, 2 * comps[small].p)}
    holm[large] = min(1.0, max(holm[small], comps[large].p))
    for r, c in comps.items():
        row = rows.loc[(r, "AD")]
        assert row["vs"] == "KS"
        assert (row["avg_diff"], row["avg_ci_lo"], row["avg_ci_hi"], row["avg_p"], row["avg_p_holm"]) == pytest.approx(
            (c.diff, c.lo, c.hi, c.p, holm[r]), abs=1e-4
        )
        assert row["avg_diff"] == pytest.approx(rows.loc[(r, "AD"), "avg"] - rows.loc[(r, "KS"), "avg"], abs=1e-4)
        assert np.isnan(rows.loc[(r, "KS"), "avg_diff"])  # the reference is not compared with itself
        # the Markdown states the same numbers and the verdict, decided on the adjusted p
        text = md.read_text()
        verdict = "significant" if holm[r] < 0.05 else "not significant"
        line = (
            f"m, {100 * r:g}%: AD − KS = {c.diff:+.1f} [{c.lo:+.1f}, {c.hi:+.1f}], p = {c.p:.3f}, "
            f"Holm p = {holm[r]:.3f} ({verdict};"
        )
        assert line in text
    assert any(c.p < 0.05 for c in comps.values())  # the planted data exercise a verdict
    assert "Reward function" in md.read_text().splitlines()[2]  # the paper's column name


def test_inputs_and_variants_must_match(tmp_path, table18_inputs):
    dense, variants = table18_inputs
    inputs = [dense] + [f for fs in variants.values() for f in fs]
    out, md = str(tmp_path / "t.csv"), str(tmp_path / "t.md")
    build = TABLES.get("table18")
    with pytest.raises(PruneNetError, match="needs --options variants"):
        build(inputs, out, md, tasks=TASKS)
    with pytest.raises(PruneNetError, match="is in no variant"):
        build(inputs, out, md, tasks=TASKS, variants={"KS": variants["KS"]})
    with pytest.raises(PruneNetError, match="not among --inputs"):
        build(inputs[:-1], out, md, tasks=TASKS, variants=variants)
    assert not Path(out).exists() and not Path(md).exists()


def test_the_schedule_table_lists_the_per_layer_ratios_it_ran(tmp_path):
    rng = np.random.default_rng(1)
    ratios = layer_ratios("shuffled:0:0.4", 6)
    dense = _write(tmp_path / "d.json", "dense", "default", 0.0, None, rng, 0.7)
    uni = [_write(tmp_path / f"u{s}.json", "prunenet", "ks-up-paper-t0.2", 0.2, s, rng, 0.6) for s in range(2)]
    sch = [_write(tmp_path / f"s{s}.json", "prunenet", "ks-up-paper-t0.2", 0.2, s, rng, 0.6, ratios) for s in range(2)]
    variants = {"uniform": uni, "shuffled:0:0.4": sch}
    out, md = tmp_path / "t7.csv", tmp_path / "t7.md"
    TABLES.get("table7")([dense, *uni, *sch], str(out), str(md), tasks=TASKS, bootstrap=200, variants=variants)
    text = md.read_text()
    assert "per-layer ratios " + ", ".join(f"{x:.3f}" for x in ratios) in text
    assert "shuffled:0:0.4 − uniform" in text
    assert set(_mean_rows(out).index) == {(0.0, "Dense"), (0.2, "uniform"), (0.2, "shuffled:0:0.4")}


def test_a_shuffled_schedule_is_a_seeded_permutation_of_evenly_spaced_ratios():
    r = layer_ratios("shuffled:0:0.4", 30)
    assert sorted(r) == pytest.approx(layer_ratios("linear:0:0.4", 30))
    assert np.mean(r) == pytest.approx(0.2, abs=1e-6)
    assert r == layer_ratios("shuffled:0:0.4:0", 30)  # seed 0 by default: the same draw every time
    assert r != layer_ratios("shuffled:0:0.4:1", 30) and r != sorted(r)
    for bad in ("shuffled:0", "linear:0:0.4:1", "cubic:0:1", "shuffled:0:0.4:x"):
        with pytest.raises(PruneNetError, match="unknown ratio schedule"):
            layer_ratios(bad, 4)


def test_baseline_tables_carry_each_rows_difference_from_prunenet_and_dense(tmp_path):
    """The CSV's ``*_vs_prunenet`` / ``*_vs_dense`` columns are the Markdown's paired differences (row − reference)."""
    rng = np.random.default_rng(3)
    files = {"dense": [_write(tmp_path / "d.json", "dense", "default", 0.0, None, rng, 0.7)]}
    files["prunenet"] = [
        _write(tmp_path / f"p{s}.json", "prunenet", "ks-up-paper-t0.3", 0.3, s, rng, 0.55) for s in range(3)
    ]
    files["slicegpt"] = [_write(tmp_path / "s.json", "slicegpt", "wikitext2", 0.3, 0, rng, 0.4)]
    inputs = [f for fs in files.values() for f in fs]
    out, md = tmp_path / "b.csv", tmp_path / "b.md"
    TABLES.get("baselines")(inputs, str(out), str(md), tasks=TASKS, bootstrap=400, seed=0)
    rows = pd.read_csv(out).set_index("method")
    loaded = {m: [json.loads(Path(f).read_text()) for f in fs] for m, fs in files.items()}

    def mats(method):
        return {t: item_matrix(loaded[method], t, METRIC[t]) for t in TASKS}

    # slicegpt − prunenet: the comparison is computed as prunenet − slicegpt (registry order) and flipped
    c = paired_bootstrap(mats("prunenet"), mats("slicegpt"), 400, 0)
    got = rows.loc["slicegpt", ["avg_diff_vs_prunenet", "avg_ci_lo_vs_prunenet", "avg_ci_hi_vs_prunenet"]]
    assert tuple(got) == pytest.approx((-c.diff, -c.hi, -c.lo), abs=1e-4)
    assert rows.loc["slicegpt", "avg_p_vs_prunenet"] == pytest.approx(c.p, abs=1e-4)
    d = paired_bootstrap(mats("prunenet"), mats("dense"), 400, 0)
    assert rows.loc["prunenet", "avg_diff_vs_dense"] == pytest.approx(d.diff, abs=1e-4)
    assert np.isnan(rows.loc["prunenet", "avg_diff_vs_prunenet"]) and np.isnan(rows.loc["dense", "avg_diff_vs_dense"])
    line = f"| 0.3 | slicegpt | prunenet | {-c.diff:+.1f} | [{-c.hi:+.1f}, {-c.lo:+.1f}] |"
    assert line in re.sub(" +", " ", md.read_text())


def test_table17_pairs_the_draw_and_the_top_k_of_one_policy_seed(tmp_path):
    """Table 17's difference is the paired-seeds bootstrap (seed s of both from policy s); Table 16's (learned vs
    random rows, unrelated seeds) is the independent one."""
    rng = np.random.default_rng(4)
    dense = _write(tmp_path / "d.json", "dense", "default", 0.0, None, rng, 0.7)
    files = {m: [_write(tmp_path / f"{m}{s}.json", m, "default", 0.2, s, rng, 0.6) for s in range(3)]
             for m in ("prunenet", "deterministic", "random")}  # fmt: skip
    loaded = {m: [json.loads(Path(f).read_text()) for f in fs] for m, fs in files.items()}
    mats = {m: {t: item_matrix(loaded[m], t, METRIC[t]) for t in TASKS} for m in files}
    for name, other, paired in (("table17", "deterministic", True), ("table16", "random", False)):
        label = {"table17": ("Stochastic", "Deterministic"), "table16": ("Policy-based", "Random")}[name]
        variants = {label[0]: files["prunenet"], label[1]: files[other]}
        out, md = tmp_path / f"{name}.csv", tmp_path / f"{name}.md"
        TABLES.get(name)([dense, *files["prunenet"], *files[other]], str(out), str(md), tasks=TASKS, bootstrap=500,
                         variants=variants)  # fmt: skip
        row = _mean_rows(out).loc[(0.2, label[1])]
        c = paired_bootstrap(mats[other], mats["prunenet"], 500, 0, paired)
        wrong = paired_bootstrap(mats[other], mats["prunenet"], 500, 0, not paired)
        assert (row["avg_ci_lo"], row["avg_ci_hi"]) == pytest.approx((c.lo, c.hi), abs=1e-4)
        assert (c.lo, c.hi) != pytest.approx((wrong.lo, wrong.hi), abs=1e-3)


def test_a_calibrated_row_on_one_draw_says_its_ci_covers_items_only(tmp_path):
    """calibration_seeds: first leaves a calibrated baseline one calibration draw: the table says its CI counts
    items only; with a draw per seed (the default, all) it says nothing."""
    rng = np.random.default_rng(5)
    dense = _write(tmp_path / "d.json", "dense", "default", 0.0, None, rng, 0.7)
    prunenet = [_write(tmp_path / f"p{s}.json", "prunenet", "ks-up-paper-t0.3", 0.3, s, rng, 0.55) for s in range(3)]

    def slicegpt(seeds):
        files = [_write(tmp_path / f"s{s}.json", "slicegpt", "wikitext2", 0.3, s, rng, 0.5) for s in seeds]
        for f in files:
            res = json.loads(Path(f).read_text())
            res["meta"]["calib_dataset"] = "wikitext2"
            Path(f).write_text(json.dumps(res))
        return files

    note = "slicegpt (wikitext2): one calibration draw: the CI covers items only."
    for seeds, said in (([0], True), ([0, 1, 2], False)):
        out, md = tmp_path / "b.csv", tmp_path / "b.md"
        inputs = [dense, *prunenet, *slicegpt(seeds)]
        TABLES.get("baselines")(inputs, str(out), str(md), tasks=TASKS, bootstrap=200)
        assert (note in md.read_text()) == said
        TABLES.get("table2")(inputs, str(out), str(md), tasks=TASKS, bootstrap=200)
        assert (note in md.read_text()) == said
