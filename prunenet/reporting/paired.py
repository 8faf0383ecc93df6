"""Paired statistics over the items every method is scored on: bootstrap CIs and the paper's KS test.

All methods answer the same lm-eval items, so two methods are compared item by item: the
bootstrap resamples items (per task) and, independently, each method's seeds (a seed is one
pruned model, so the same seed draw is used for every task), and recomputes the difference of
macro-averaged accuracy. Its 2.5/97.5 percentiles are the 95 % CI; the two-sided p-value is
twice the smaller tail mass at zero.

Items and seeds are crossed, so resampling raw seed rows would count each answer's own noise twice:
once in the item arm (an item's seed average carries it) and again in every seed's mean. Under a null of
equal per-item probabilities that doubles the variance and the false-positive rate at a nominal 5 % falls
to about 0.4 % (``tests/test_paired.py`` simulates it). The seed arm therefore resamples each seed's
overall deviation from the method's item means, scaled so its spread is the between-seed variance the
answer noise does not explain (two-way ANOVA moments; the "reflated residuals" of Carpenter, Goldstein
and Rasbash's multilevel bootstrap, 2003). One seed: nothing to resample, the matrix is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .multiplicity import ALPHA

# Paired bootstrap resamples when a caller names none: config.yaml's ``bootstrap`` (the workflow passes the
# config's value; this is what a direct call gets, so the two agree).
BOOTSTRAP = 5000


@dataclass(frozen=True)
class Comparison:
    """A − B in accuracy points (×100): point estimate, 95 % bootstrap CI, two-sided p-value, bootstrap standard
    error (the resolution: :func:`~prunenet.reporting.multiplicity.mde`) and the items it rests on."""

    diff: float
    lo: float
    hi: float
    p: float
    se: float = float("nan")
    items: int = 0  # items paired, summed over the tasks

    @property
    def significant(self) -> bool:
        """Alone (a family of one). A table decides on the Holm-adjusted p of all it prints (multiplicity.py)."""
        return self.p < ALPHA


def item_matrix(results: list[dict], task: str, metric: str) -> tuple[list, np.ndarray]:
    """(doc ids, seeds × items correctness) of one task across the per-seed results of one method.

    Only the items every seed answered are kept, in doc-id order, so rows line up.
    """
    per_seed = [dict(zip(r["tasks"][task]["items"]["doc_id"], r["tasks"][task]["items"][metric])) for r in results]
    ids = sorted(set.intersection(*(set(d) for d in per_seed)), key=str)
    return ids, np.array([[d[i] for i in ids] for d in per_seed], dtype=float)


def _common(a: tuple[list, np.ndarray], b: tuple[list, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Restrict two methods' item matrices to the items both answered (same order)."""
    (ids_a, xa), (ids_b, xb) = a, b
    common = sorted(set(ids_a) & set(ids_b), key=str)
    ia, ib = {k: j for j, k in enumerate(ids_a)}, {k: j for j, k in enumerate(ids_b)}
    return xa[:, [ia[k] for k in common]], xb[:, [ib[k] for k in common]]


def seed_effects(x: np.ndarray) -> np.ndarray:
    """``x`` (seeds × items) as item means plus each seed's deviation, the deviations scaled so their spread
    (ddof 0, what a multinomial draw of S seeds reproduces) is the between-seed variance estimated by
    var(seed means) − σ̂²_e/n, σ̂²_e the two-way residual variance (floored at 0: seeds that agree up to answer
    noise add none). The seed arm of :func:`paired_bootstrap` resamples the rows of this matrix."""
    s, n = x.shape
    if s == 1 or n == 1:
        return x
    items, seeds = x.mean(axis=0), x.mean(axis=1)
    dev = seeds - seeds.mean()
    resid = x - items[None, :] - dev[:, None]
    noise = (resid**2).sum() / ((s - 1) * (n - 1))
    between = max(0.0, dev.var(ddof=1) - noise / n)
    spread = dev.var(ddof=0)
    scale = np.sqrt(between / spread) if spread > 0 else 0.0
    return items[None, :] + scale * dev[:, None]


def paired_bootstrap(
    a: dict[str, tuple[list, np.ndarray]],
    b: dict[str, tuple[list, np.ndarray]],
    iters: int = BOOTSTRAP,
    seed: int = 0,
    paired_seeds: bool = False,
) -> Comparison:
    """Macro-average (over the tasks in ``a``) accuracy of A minus B, in points, with its bootstrap CI.

    ``a[task]`` and ``b[task]`` are :func:`item_matrix` outputs (seeds × items); seed counts may
    differ (dense has one). Items are resampled per task, seeds per method once per resample (their
    deviations only, :func:`seed_effects`). ``paired_seeds``: row s of A and of B come from one seed (Table 17:
    a policy's draw and its top-k), so one seed draw serves both and the seed arm resamples the per-seed
    differences.
    """
    rng = np.random.default_rng(seed)
    pairs = {t: _common(a[t], b[t]) for t in a}
    s_a, s_b = next(iter(pairs.values()))[0].shape[0], next(iter(pairs.values()))[1].shape[0]
    if paired_seeds and s_a != s_b:
        raise ValueError(f"paired seeds need as many seeds on both sides, not {s_a} and {s_b}")
    c_a = rng.multinomial(s_a, np.full(s_a, 1 / s_a), size=iters) / s_a  # (B, S_a) seed weights
    c_b = rng.multinomial(s_b, np.full(s_b, 1 / s_b), size=iters) / s_b
    point, boot = 0.0, np.zeros(iters)
    n_items = sum(xa.shape[1] for xa, _ in pairs.values())
    for xa, xb in pairs.values():
        n = xa.shape[1]
        w = rng.multinomial(n, np.full(n, 1 / n), size=iters) / n  # (B, n) item weights
        point += xa.mean() - xb.mean()
        if paired_seeds:
            boot += ((c_a @ seed_effects(xa - xb)) * w).sum(axis=1)
        else:
            boot += ((c_a @ seed_effects(xa) - c_b @ seed_effects(xb)) * w).sum(axis=1)
    k = len(pairs)
    point, boot = 100 * point / k, 100 * boot / k
    lo, hi = np.percentile(boot, [2.5, 97.5])
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    p = min(1.0, 2 * (tail + 1) / (iters + 1))
    return Comparison(float(point), float(lo), float(hi), float(p), float(boot.std(ddof=1)), n_items)


def ks_drops(drops_a: list[float], drops_b: list[float]) -> tuple[float, float]:
    """The paper's one-sided two-sample KS test that A's accuracy drops are smaller than B's.

    H0: the drops of A are not stochastically smaller (F_A ≤ F_B everywhere); the alternative
    F_A > F_B somewhere is scipy's ``alternative="greater"`` with A as the first sample.
    Returns (statistic, p-value).
    """
    from scipy.stats import ks_2samp

    res = ks_2samp(drops_a, drops_b, alternative="greater")
    return float(res.statistic), float(res.pvalue)
