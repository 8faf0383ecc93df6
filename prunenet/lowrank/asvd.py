"""ASVD (Yuan et al. 2023, arXiv 2312.05821): activation-aware truncation with per-matrix ranks from STRS.

1. Scaling (the paper's activation-aware scaling matrix): the mean absolute input of each channel over the
   calibration tokens, ``S_ii = (mean_j |x_ij|)^α`` (α = 0.5 in the paper), measured on the dense model block
   by block.
2. Decomposition: SVD of ``W·S`` once per linear; ``W ≈ U_kΣ_kV_kᵀS⁻¹`` for any rank ``k`` is a prefix of it
   (:func:`prunenet.lowrank.factor.asvd_factors`, √Σ fused into both factors as the release's ``SVDLinear``).
3. Sensitivity-based truncation rank searching (STRS, :mod:`prunenet.lowrank.search`): the calibration
   loss with one linear truncated to each candidate parameter ratio, then the threshold whose per-linear
   choices remove PruneNet's parameter budget (the paper searches for a parameter-ratio target the same way).

The sensitivity windows are the first ``sens_samples`` calibration windows cut to ``sens_seq_len`` tokens:
a subset of the scaling data, small enough for ~2k evaluations on one CPU thread. The release's other metric
(``--sensitivity_metric stable_rank``, :func:`stable_rank_sensitivities`) reads the weights alone: no
evaluation, and an allocation that no calibration draw moves (docs/methods.md "ASVD").

Steps 1 and 3's measurements do not depend on the budget: :func:`prepare_asvd` returns them as tensors
(``prunenet prepare`` stores them once per model and seed), and :func:`compress_asvd` turns them into one
ratio's model, decomposing only the linears it truncates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..arch import get_adapter
from .activations import block_inputs, capture, recording, run_block
from .budget import rank_for_ratio, removed
from .factor import asvd_factors, asvd_scale
from .layers import LowRankLinear, block_linears, decoder_linears, replace
from .search import CandidateLinear, select, tail_losses


@dataclass
class AsvdResult:
    """What one ASVD run chose and measured."""

    ranks: dict[str, int] = field(default_factory=dict)  # factored linears only
    ratios: dict[str, float] = field(default_factory=dict)  # the chosen parameter ratio of each (1.0: dense)
    sensitivity: dict[str, list[float]] = field(default_factory=dict)  # calibration loss per candidate ratio
    dense_loss: float = float("nan")
    threshold: float = float("nan")  # the admitted loss (perplexity exp(threshold))
    removed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def channel_scales(model: nn.Module, calib: torch.Tensor, alpha: float, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Every projection's ASVD scaling diagonal from the dense model's calibration activations."""
    paths = {id(m): p for p, m in decoder_linears(model).items()}
    cal = capture(model, calib, batch_size)
    hidden, scales = cal.hidden, {}
    for i, layer in enumerate(get_adapter(model).layers()):
        with recording(model, layer, gram=False, abs_mean=True) as stats:
            hidden = run_block(layer, i, hidden, cal)
        for lin in block_linears(model, layer):
            scales[paths[id(lin)]] = asvd_scale(stats[lin].abs_mean(), alpha)
    return scales


@torch.no_grad()
def sensitivities(
    model: nn.Module, sens_ids: torch.Tensor, scales: dict[str, torch.Tensor], ratios: Sequence[float]
) -> dict[str, list[float]]:
    """The loss with each linear alone truncated to each ratio (one SVD and one batched forward per linear)."""
    linears = decoder_linears(model)
    paths = {id(m): p for p, m in linears.items()}
    inputs = block_inputs(model, sens_ids)
    losses = {}
    for i, layer in enumerate(get_adapter(model).layers()):
        for lin in block_linears(model, layer):
            path = paths[id(lin)]
            ranks = candidate_ranks(lin, ratios)
            factors = asvd_factors(lin.weight, scales[path], max(ranks))
            replace(model, path, CandidateLinear(factors, ranks, lin.bias))
            try:
                losses[path] = tail_losses(model, i, inputs[i], sens_ids, len(ratios)).tolist()
            finally:
                replace(model, path, lin)
    return losses


@torch.no_grad()
def stable_rank_sensitivities(model: nn.Module, ratios: Sequence[float]) -> dict[str, list[float]]:
    """The release's data-free sensitivity (sensitivity.py ``calib_sensitivity_stable_rank``).

    ``s(l, r) = −√(‖W‖_F² / σ_max(W)²) · r^0.1`` on the raw weight (the release comments its scaling out):
    STRS admits the lowest first, so matrices of high stable rank (flat spectra) are truncated first and hardest.
    Why it exists here: the allocation depends on the weights only, so it is the same for every calibration draw.
    """
    out = {}
    for path, lin in decoder_linears(model).items():
        w = lin.weight.double()
        root = math.sqrt(float(w.pow(2).sum() / torch.linalg.matrix_norm(w, ord=2) ** 2))
        out[path] = [-root * r**0.1 for r in ratios]
    return out


def candidate_ranks(lin: nn.Linear, ratios: Sequence[float]) -> list[int]:
    """The rank of ``lin`` at each candidate parameter ratio."""
    return [rank_for_ratio(lin.out_features, lin.in_features, r) for r in ratios]


@torch.no_grad()
def dense_loss(model: nn.Module, ids: torch.Tensor) -> float:
    """The dense model's mean next-token loss on ``ids``, by the same definition as the sensitivities."""
    hidden = torch.cat(capture(model, ids, ids.shape[0]).hidden)
    return float(tail_losses(model, 0, hidden, ids, 1)[0])


@torch.no_grad()
def prepare_asvd(
    model: nn.Module,
    calib: torch.Tensor,
    sens_ids: torch.Tensor,
    ratios: Sequence[float],
    alpha: float = 0.5,
    batch_size: int = 8,
    metric: str = "ppl",
) -> dict[str, torch.Tensor]:
    """ASVD's ratio-independent state: each linear's scaling (``scale.<path>``) and sensitivities (``loss.<path>``,
    float64, one per candidate ratio; ``metric``: ``ppl`` the calibration loss, ``stable_rank`` the release's
    weight-only score), the dense loss and the seconds of both stages (``seconds``)."""
    t0 = time.perf_counter()
    scales = channel_scales(model, calib, alpha, batch_size)
    t1 = time.perf_counter()
    dense = dense_loss(model, sens_ids)
    if metric == "stable_rank":
        losses = stable_rank_sensitivities(model, ratios)
    else:
        losses = sensitivities(model, sens_ids, scales, ratios)
    t2 = time.perf_counter()
    state = {f"scale.{p}": s for p, s in scales.items()}
    state |= {f"loss.{p}": torch.tensor(v, dtype=torch.float64) for p, v in losses.items()}
    state["dense_loss"] = torch.tensor(dense, dtype=torch.float64)
    state["seconds"] = torch.tensor([t1 - t0, t2 - t1], dtype=torch.float64)
    return state


@torch.no_grad()
def compress_asvd(
    model: nn.Module, state: Mapping[str, torch.Tensor], budget: int, ratios: Sequence[float]
) -> tuple[nn.Module, AsvdResult]:
    """Factor the decoder projections of ``model`` in place with STRS's ranks for a removal of ``budget``.

    ``state`` is :func:`prepare_asvd`'s for this model and ``ratios``; only the chosen linears are decomposed.
    """
    out = AsvdResult()
    t0 = time.perf_counter()
    linears = decoder_linears(model)
    losses = {p: state[f"loss.{p}"].tolist() for p in linears}
    cand = {p: candidate_ranks(m, ratios) for p, m in linears.items()}
    savings = {p: [removed(m.out_features, m.in_features, k) for k in cand[p]] for p, m in linears.items()}
    choice, out.threshold, out.removed = select(losses, savings, budget)
    for path in list(linears):
        lin = linears.pop(path)  # a replaced linear's dense weight is freed before the next one is factored
        c = choice[path]
        out.ratios[path] = 1.0 if c is None or not savings[path][c] else float(ratios[c])
        if c is None or not savings[path][c]:
            continue
        k = cand[path][c]
        u, v = asvd_factors(lin.weight, state[f"scale.{path}"], k).prefix(k)
        replace(model, path, LowRankLinear.from_factors(u, v, lin.bias))
        out.ranks[path] = k
        del lin, u, v
    out.sensitivity = {p: [round(x, 6) for x in v] for p, v in losses.items()}
    out.dense_loss = float(state["dense_loss"])
    scaling, sensitivity = state["seconds"].tolist()
    out.seconds = {"scaling": scaling, "sensitivity": sensitivity, "factoring": time.perf_counter() - t0}
    if not math.isfinite(out.threshold):
        out.threshold = float("nan")
    return model, out
