"""Paired statistics against ground truth: the bootstrap against the closed-form paired standard error and
exact identities, the KS test's direction, and the tables built from per-item results."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from prunenet.reporting.comparisons import comparisons_frame, transfer_frame
from prunenet.reporting.ks import ks_lines, ks_test
from prunenet.reporting.multiplicity import holm, significant
from prunenet.reporting.paired import item_matrix, ks_drops, paired_bootstrap


def _mat(x):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    return list(range(x.shape[1])), x


def test_bootstrap_matches_the_paired_standard_error():
    """One seed each: the bootstrap sd of the mean difference equals sd(d)/√n, its centre the mean difference."""
    rng = np.random.default_rng(1)
    n = 400
    a = (rng.random(n) < 0.6).astype(float)
    b = np.where(rng.random(n) < 0.8, a, 1 - a)  # correlated with a, as two models on the same items are
    c = paired_bootstrap({"t": _mat(a)}, {"t": _mat(b)}, iters=4000, seed=0)
    d = a - b
    se = 100 * d.std(ddof=0) / np.sqrt(n)
    assert c.diff == pytest.approx(100 * d.mean())
    assert (c.hi - c.lo) / (2 * 1.96) == pytest.approx(se, rel=0.1)
    # unpaired resampling would be wider: pairing is what the CI uses
    unpaired = 100 * np.sqrt(a.var() / n + b.var() / n)
    assert se < 0.8 * unpaired


def test_identical_methods_differ_by_exactly_zero():
    """Same items, same single model: every resample pairs each item with itself."""
    x = np.random.default_rng(0).integers(0, 2, (1, 50))
    c = paired_bootstrap({"t": _mat(x)}, {"t": _mat(x)}, iters=500)
    assert (c.diff, c.lo, c.hi, c.p, c.significant) == (0.0, 0.0, 0.0, 1.0, False)


def test_seeds_and_tasks_are_averaged_as_the_table_does():
    """Point estimate = macro average over tasks of (mean over seeds and items of A) − (same of B)."""
    rng = np.random.default_rng(2)
    a = {t: _mat(rng.integers(0, 2, (3, n))) for t, n in (("x", 20), ("y", 35))}
    b = {t: _mat(rng.integers(0, 2, (1, n))) for t, n in (("x", 20), ("y", 35))}
    c = paired_bootstrap(a, b, iters=200)
    expected = np.mean([a[t][1].mean() - b[t][1].mean() for t in a])
    assert c.diff == pytest.approx(100 * expected)
    assert c.lo <= c.diff <= c.hi


def test_a_clear_difference_is_significant_and_a_null_one_is_not():
    rng = np.random.default_rng(3)
    truth = rng.random(300)
    good = (rng.random((3, 300)) < 0.2 + 0.6 * truth).astype(float)
    bad = (rng.random((3, 300)) < 0.6 * truth).astype(float)
    assert paired_bootstrap({"t": _mat(good)}, {"t": _mat(bad)}, iters=2000).p < 0.01
    same = (rng.random((3, 300)) < 0.2 + 0.6 * truth).astype(float)
    assert not paired_bootstrap({"t": _mat(good)}, {"t": _mat(same)}, iters=2000).significant


def test_item_matrix_aligns_items_by_doc_id():
    runs = [
        {"tasks": {"t": {"items": {"doc_id": [2, 0, 1], "acc": [1.0, 0.0, 1.0]}}}},
        {"tasks": {"t": {"items": {"doc_id": [0, 1, 3], "acc": [1.0, 1.0, 0.0]}}}},
    ]
    ids, x = item_matrix(runs, "t", "acc")
    assert ids == [0, 1] and x.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_ks_test_is_scipys_one_sided_test_in_the_papers_direction():
    small, large = [0.5, 1.0, 1.5, 2.0, 1.2, 0.8], [3.0, 4.0, 2.5, 5.0, 3.5, 4.5]
    stat, p = ks_drops(small, large)
    ref = ks_2samp(small, large, alternative="greater")
    assert (stat, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert p < 0.05 and ks_drops(large, small)[1] > 0.5  # smaller drops for A: significant; the reverse: not


def _result(method, ratio, seed, correct, setting="default", trained=None):
    """A minimal evaluation JSON: one task, per-item correctness on acc_norm (piqa's primary metric)."""
    meta = {"policy_trained_at": trained} if trained is not None else {}
    return {
        "model": "m",
        "method": method,
        "setting": setting,
        "ratio": ratio,
        "seed": seed,
        "meta": meta,
        "tasks": {
            "piqa": {
                "primary": float(np.mean(correct)),
                "items": {"doc_id": list(range(len(correct))), "acc_norm": correct},
            }
        },
    }


def test_comparisons_pair_every_row_at_a_ratio_and_with_dense():
    rng = np.random.default_rng(4)
    res = [_result("dense", 0.0, None, rng.integers(0, 2, 40).tolist())]
    for m in ("prunenet", "random"):
        res += [_result(m, 0.2, s, rng.integers(0, 2, 40).tolist()) for s in range(3)]
    res.append(_result("slicegpt", 0.2, 0, rng.integers(0, 2, 40).tolist()))
    df = comparisons_frame(res, ["piqa"], iters=200)
    avg = df[df.task == "avg"]
    pairs = set(zip(avg.a, avg.b))
    assert pairs == {
        ("prunenet", "dense"),
        ("random", "dense"),
        ("slicegpt", "dense"),
        ("prunenet", "random"),
        ("prunenet", "slicegpt"),
        ("random", "slicegpt"),
    }
    row = avg[(avg.a == "prunenet") & (avg.b == "random")].iloc[0]
    means = {
        m: np.mean([r["tasks"]["piqa"]["primary"] for r in res if r["method"] == m]) for m in ("prunenet", "random")
    }
    assert row["diff"] == pytest.approx(100 * (means["prunenet"] - means["random"]))
    assert (row["seeds_a"], row["seeds_b"]) == (3, 3)
    ks = ks_test(res, ["piqa"])
    assert [t["n"] for t in ks] == [(1, 1)]


def test_transfer_pairs_each_transferred_policy_with_the_same_ratio_policy():
    rng = np.random.default_rng(5)
    same = [_result("prunenet", 0.2, s, rng.integers(0, 2, 30).tolist(), "p-t0.2", 0.2) for s in range(2)]
    moved = [_result("prunenet", 0.2, s, rng.integers(0, 2, 30).tolist(), "p-t0.4", 0.4) for s in range(2)]
    df = transfer_frame(same + moved, ["piqa"], iters=200)
    assert df[["policy_ratio", "ratio", "seeds"]].values.tolist() == [[0.4, 0.2, 2]]
    mean = lambda rs: 100 * np.mean([r["tasks"]["piqa"]["primary"] for r in rs])  # noqa: E731
    assert df["piqa"].iloc[0] == pytest.approx(mean(moved)) and df["piqa_same"].iloc[0] == pytest.approx(mean(same))
    assert 0 < df["avg_p"].iloc[0] <= 1


def test_holm_against_a_hand_worked_example():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04
    raised to the running maximum 0.06; back in input order (0.03, 0.06, 0.06, 0.02). At 0.05, the two smallest are
    rejected while unadjusted all four would be. A NaN is no test: m = 2 for (nan, 0.5, 0.6), capped at 1."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [significant(p) for p in holm([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]
    out = holm([float("nan"), 0.5, 0.6])
    assert np.isnan(out[0]) and out[1:] == pytest.approx([1.0, 1.0])
    assert holm([0.2, 0.7]) == pytest.approx([0.4, 0.7]) and holm([0.03]) == pytest.approx([0.03])


def _model_result(model, method, ratio, seed, correct, setting="default"):
    return _result(method, ratio, seed, correct, setting) | {"model": model}


def test_ks_takes_its_samples_per_model_and_setting_and_names_a_refused_model():
    """Two models, SliceGPT only on the first and on two calibration corpora: one test per (model, corpus), each on
    that model's drops only; the second model is "not applicable", never p = nan."""
    rng = np.random.default_rng(6)
    res = []
    for model in ("a", "b"):
        res.append(_model_result(model, "dense", 0.0, None, [1.0] * 40))
        for r in (0.1, 0.2, 0.3):
            res += [_model_result(model, "prunenet", r, s, (rng.random(40) < 0.8).tolist(), f"ks-up-paper-t{r}")
                    for s in range(2)]  # fmt: skip
            if model == "a":
                for corpus, p in (("wikitext2", 0.6), ("alpaca", 0.9)):
                    res.append(_model_result(model, "slicegpt", r, 0, (rng.random(40) < p).tolist(), corpus))
    tests = ks_test(res, ["piqa"])
    assert [(t["model"], t.get("settings"), t.get("missing")) for t in tests] == [
        ("a", ("ks-up-paper", "wikitext2"), None),
        ("a", ("ks-up-paper", "alpaca"), None),
        ("b", None, "slicegpt"),
    ]
    for t, corpus in zip(tests, ("wikitext2", "alpaca")):
        drops = {
            m: [100 * (1 - r["tasks"]["piqa"]["primary"]) for r in res if r["model"] == "a" and r["method"] == m
                and (m == "prunenet" or r["setting"] == corpus)]
            for m in ("prunenet", "slicegpt")
        }  # fmt: skip
        prunenet = [np.mean(drops["prunenet"][i : i + 2]) for i in (0, 2, 4)]  # seed means per ratio
        stat, p = ks_drops(prunenet, drops["slicegpt"])
        assert (t["statistic"], t["p"], t["n"]) == (pytest.approx(stat), pytest.approx(p), (3, 3))
    assert [t["p_holm"] for t in tests[:2]] == pytest.approx(list(holm([t["p"] for t in tests[:2]])))
    lines = ks_lines(res, ["piqa"])
    assert lines[2] == "One-sided KS test (b): not applicable: slicegpt refuses b."
    assert all("nan" not in line for line in lines) and "prunenet ks-up-paper vs slicegpt alpaca" in lines[1]


def _null_and_planted(reps: int, seeds_b: int, delta: float, seed: int) -> tuple[float, float]:
    """(rate of p < 0.05, coverage of the planted difference) over ``reps`` simulated comparisons: 60 items whose
    correctness probabilities are drawn per repetition, A with 3 seeds at p + delta, B at p with ``seeds_b``,
    every answer an independent draw."""
    rng = np.random.default_rng(seed)
    rejected = covered = 0
    for i in range(reps):
        p = rng.uniform(0.1, 0.7, 60)
        a = (rng.random((3, 60)) < p + delta).astype(float)
        b = (rng.random((seeds_b, 60)) < p).astype(float)
        c = paired_bootstrap({"t": _mat(a)}, {"t": _mat(b)}, iters=400, seed=i)
        rejected += c.p < 0.05
        covered += c.lo <= 100 * delta <= c.hi
    return rejected / reps, covered / reps


def test_the_bootstrap_holds_its_level_under_a_simulated_null_and_covers_a_planted_difference():
    """Two methods with the same per-item probabilities, independent draws: the false-positive rate at 5 % lies in
    [0.02, 0.08] (3 vs 3 seeds and 3 vs 1, dense's case); a planted +15 points is covered about 95 % of the time.
    Resampling raw seed rows (answer noise counted twice) gave 0.004 for 3 vs 3."""
    for seeds_b, seed in ((3, 11), (1, 12)):
        false_positives, _ = _null_and_planted(600, seeds_b, 0.0, seed)
        assert 0.02 <= false_positives <= 0.08, (seeds_b, false_positives)
    _, coverage = _null_and_planted(600, 3, 0.15, 13)
    assert 0.92 <= coverage <= 0.98


def test_the_seed_arm_widens_the_ci_when_seeds_disagree():
    """Same item means, two seed structures: seeds that differ in overall accuracy (nested: 30 / 50 / 70 %) give a
    wider CI than seeds that share each item's correct answers evenly (every seed 50 %)."""
    n = 120
    order = np.random.default_rng(8).permutation(n)
    disagree = np.array([(order < q * n).astype(float) for q in (0.3, 0.5, 0.7)])
    counts = disagree.sum(axis=0).astype(int)  # correct answers per item, spread evenly over the seeds instead
    agree = np.zeros_like(disagree)
    slot = 0
    for j in np.argsort(-counts, kind="stable"):
        for k in range(counts[j]):
            agree[(slot + k) % 3, j] = 1.0
        slot += counts[j]
    assert (agree.mean(axis=0) == disagree.mean(axis=0)).all() and np.ptp(agree.mean(axis=1)) < 0.01
    other = _mat(np.random.default_rng(9).integers(0, 2, (1, n)))

    def width(x):
        c = paired_bootstrap({"t": _mat(x)}, {"t": other}, iters=2000, seed=0)
        return c.hi - c.lo

    assert width(disagree) > 1.3 * width(agree)


def test_paired_seeds_resample_the_per_seed_difference():
    """Table 17's draw and top-k of seed s share policy s: with seeds that differ a lot but a draw close to its top-k,
    drawing both sides' seeds together leaves only the per-seed differences, a CI far narrower than independent
    draws give; unequal seed counts are refused."""
    n = 200
    order = np.random.default_rng(10).permutation(n)
    top_k = np.array([(order < q * n).astype(float) for q in (0.3, 0.5, 0.7)])
    draw, rng = top_k.copy(), np.random.default_rng(11)
    for row in draw:  # the draw trades 6 of its top-k rows' right answers for 6 wrong ones: same accuracy per seed
        ones, zeros = np.flatnonzero(row == 1), np.flatnonzero(row == 0)
        row[rng.choice(ones, 6, replace=False)], row[rng.choice(zeros, 6, replace=False)] = 0.0, 1.0
    paired = paired_bootstrap({"t": _mat(draw)}, {"t": _mat(top_k)}, iters=2000, paired_seeds=True)
    independent = paired_bootstrap({"t": _mat(draw)}, {"t": _mat(top_k)}, iters=2000)
    assert paired.diff == independent.diff
    assert paired.hi - paired.lo < 0.5 * (independent.hi - independent.lo)
    d = (draw - top_k).mean(axis=0)  # the per-seed-averaged differences: the CI is about their paired SE
    assert (paired.hi - paired.lo) / (2 * 1.96) == pytest.approx(100 * d.std() / np.sqrt(n), rel=0.25)
    with pytest.raises(ValueError, match="as many seeds"):
        paired_bootstrap({"t": _mat(draw)}, {"t": _mat(top_k[:1])}, paired_seeds=True)


def test_direct_calls_resample_as_often_as_the_config():
    """A reporting function called without a bootstrap count uses config.yaml's (the workflow passes it)."""
    from pathlib import Path

    import yaml

    from prunenet.reporting.paired import BOOTSTRAP

    root = Path(__file__).resolve().parents[1]
    assert yaml.safe_load((root / "config/config.yaml").read_text())["bootstrap"] == BOOTSTRAP
