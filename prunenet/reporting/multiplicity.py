"""Multiplicity control and resolution for the comparisons printed under a table.

A table that prints m paired comparisons and calls each "significant" when its own 95 % CI excludes zero
makes about 0.05·m false claims under the null. Every table therefore controls the family-wise error rate of
the comparisons it prints with Holm's step-down procedure (uniformly more powerful than Bonferroni and valid
under any dependence between the tests, which paired comparisons sharing items and rows certainly have):
"significant" means Holm-adjusted p < ``ALPHA``. The CIs stay unadjusted and are labelled so.

statsmodels' ``multipletests`` is not a dependency of this project, so Holm is the few lines below
(``tests/test_paired.py`` checks them against a hand-worked example).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

ALPHA = 0.05  # the family-wise error rate every table controls
POWER = 0.8  # the power at which :func:`mde` states a table's resolution


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order: sorted ascending, the i-th (0-based) of m is multiplied by
    (m − i), made monotone non-decreasing by a running maximum and capped at 1. NaN p-values (no test) stay NaN
    and do not count towards m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate(p[ok][order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = scaled
    out[ok] = adjusted
    return out


def with_holm(df: pd.DataFrame, p: str = "p", out: str = "p_holm") -> pd.DataFrame:
    """``df`` with its column ``p`` Holm-adjusted over all its rows (one family) as ``out``, placed right after
    ``p`` so raw and adjusted p sit side by side."""
    df = df.drop(columns=[out], errors="ignore")
    df.insert(df.columns.get_loc(p) + 1, out, holm(df[p].to_numpy()) if len(df) else [])
    return df


def significant(p_adjusted: float) -> bool:
    """The one rule for "significant" in every table and the report: Holm-adjusted p < ALPHA."""
    return bool(p_adjusted < ALPHA)


def mde(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided test at ``alpha`` with ``power``, given the estimate's standard
    error (here the bootstrap's): (z_{1−α/2} + z_{power})·SE, about 2.80·SE at 5 % and 80 %."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def family_note(m: int, iters: int) -> str:
    """How "significant" is decided under a table, and the resolution limit of a bootstrap p-value: with B
    resamples p cannot go below 2/(B+1), so Holm cannot reject anything once 2m/(B+1) ≥ ALPHA."""
    floor = 2 / (iters + 1)
    text = (
        f"Significant: Holm-adjusted p < {ALPHA:g} over the {m} comparisons printed here (family-wise error "
        f"rate {ALPHA:g}); the 95 % CIs are unadjusted."
    )
    if m * floor >= ALPHA:
        text += (
            f" With {iters} resamples no p can fall below {floor:.4f}, so no comparison of this family can be "
            f"significant: raise `bootstrap` to at least {int(np.ceil(2 * m / ALPHA))}."
        )
    return text
