"""Ranks from parameter ratios, and the ratio that removes PruneNet's parameter budget.

The project compares methods at equal size: each removes (as nearly as its unit allows) the parameters
PruneNet removes at the same ratio, :func:`prunenet.budget.ffn_rows_budget`. A rank-``k`` factorisation of an
``out × in`` weight stores ``k·(out + in)``; it is used only where that is smaller than ``out·in``, else the
matrix stays dense (its bias is kept either way, so it never enters the count).

A *parameter ratio* ``ρ`` is the fraction of a matrix's weights kept, and both papers turn it into a rank
the same way, ``k = ⌊ρ·out·in / (out + in)⌋`` (SVD-LLM's release: ``int(m·n·ratio/(m+n))``; ASVD's
``SVDLinear.from_linear``: ``int(n_params·param_ratio) // (in + out)``); rank 0 is raised to 1.

SVD-LLM compresses every matrix with one ratio (its release truncates each weight of the model with the same
``ratio``): :func:`uniform_ratio` bisects ``ρ`` so that the total removal matches the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import BudgetMissed, PruneNetError

Shape = tuple[int, int]  # (out_features, in_features)


def rank_for_ratio(out_features: int, in_features: int, ratio: float) -> int:
    """The rank that keeps the fraction ``ratio`` of an ``out × in`` weight (at least 1)."""
    return max(1, math.floor(ratio * out_features * in_features / (out_features + in_features)))


def worth_factoring(out_features: int, in_features: int, rank: int | None) -> bool:
    """Whether a rank-``rank`` factorisation stores fewer weights than the dense matrix."""
    return rank is not None and rank * (out_features + in_features) < out_features * in_features


def removed(out_features: int, in_features: int, rank: int | None) -> int:
    """Weights saved by factoring at ``rank`` (0 when the matrix stays dense)."""
    if not worth_factoring(out_features, in_features, rank):
        return 0
    return out_features * in_features - rank * (out_features + in_features)


def ranks_for_ratio(shapes: Sequence[Shape], ratio: float) -> list[int | None]:
    """Every matrix's rank at the uniform parameter ratio (None: kept dense, factoring would not save)."""
    ranks = []
    for o, i in shapes:
        k = rank_for_ratio(o, i, ratio)
        ranks.append(k if worth_factoring(o, i, k) else None)
    return ranks


def total_removed(shapes: Sequence[Shape], ranks: Sequence[int | None]) -> int:
    return sum(removed(o, i, k) for (o, i), k in zip(shapes, ranks))


def uniform_ratio(shapes: Sequence[Shape], budget: int, iters: int = 60) -> tuple[float, list[int | None]]:
    """The uniform parameter ratio whose removal is nearest ``budget``, with the ranks it gives.

    Removal falls monotonically (in steps) as the ratio grows; bisection brackets the step where it crosses
    the budget and the nearer side wins (ties: the smaller removal).
    """
    if budget <= 0:
        return 1.0, [None] * len(shapes)
    # removal(lo) >= budget > removal(hi) is maintained; at ratio 2 no factorisation saves anything
    lo, hi = 0.0, 2.0
    if total_removed(shapes, ranks_for_ratio(shapes, lo)) < budget:
        raise PruneNetError(
            f"cannot remove {budget} parameters by factoring: even rank 1 everywhere removes fewer; lower --ratio"
        )
    for _ in range(iters):
        mid = (lo + hi) / 2
        if total_removed(shapes, ranks_for_ratio(shapes, mid)) >= budget:
            lo = mid
        else:
            hi = mid
    best = min((hi, lo), key=lambda r: abs(total_removed(shapes, ranks_for_ratio(shapes, r)) - budget))
    return best, ranks_for_ratio(shapes, best)


def nominal_removal(shapes: Sequence[Shape], ratio: float) -> int:
    """The weights a nominal ratio ``r`` asks to remove from these matrices: ``round(r · Σ out·in)`` (ASVD's
    ``--param_ratio_target`` is the kept fraction ``1 − r`` of the same sum)."""
    return round(ratio * sum(o * i for o, i in shapes))


def check_budget(
    removed_params: int, budget: int, dense_params: int, method: str, tolerance: float = 0.01, meta: dict | None = None
) -> None:
    """Refuse a result whose removal misses PruneNet's budget by more than ``tolerance`` of the dense size; ``meta``
    (the method's record of its work) travels with the error for a caller that measures cost."""
    if abs(removed_params - budget) > tolerance * dense_params:
        raise BudgetMissed(
            f"{method} removed {removed_params} parameters but the budget is {budget} "
            f"(more than {tolerance:.0%} of the {dense_params} dense parameters apart)",
            meta,
        )
