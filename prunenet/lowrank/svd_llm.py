"""SVD-LLM (Wang, Zheng, Wan, Zhang 2024, arXiv 2403.07378): whitened truncation of every decoder projection.

Per linear: ``G = X Xᵀ`` over the calibration tokens it reads, ``S = chol(G)`` (damped only if needed),
SVD of ``W S``, keep the top ``k`` components, store ``U' = U_kΣ_k^{1/2}`` and ``V' = Σ_k^{1/2}V_kᵀS⁻¹``
(:func:`prunenet.lowrank.factor.svd_llm_factors`). Every matrix gets the same parameter ratio, bisected so
that the model loses PruneNet's parameter budget (:func:`prunenet.lowrank.budget.uniform_ratio`).

Whitening statistics come from the dense model (the release profiles the uncompressed model), block by
block. ``update="closed-form"`` adds the paper's layer-wise closed-form update (arXiv v1; the
release's ``--step 2``, which its README recommends for ratios above 0.3): blocks are compressed in order,
and each ``U'`` is refit by least squares, ``V'`` fixed, to the outputs the dense weight gives on the inputs
that reach it once every earlier block is compressed (:func:`prunenet.lowrank.factor.closed_form_u`). The
later versions (ICLR 2025) replace it by LoRA fine-tuning of ``U'`` then ``V'`` ("sequential low-rank
approximation"), which is fine-tuning and lives in the pipeline's recovery step, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..arch import get_adapter
from .activations import Calibration, capture, recording, run_block
from .budget import ranks_for_ratio, uniform_ratio
from .factor import cholesky_whitening, closed_form_u, svd_llm_factors
from .layers import LowRankLinear, block_linears, decoder_linears, replace

UPDATES = ("none", "closed-form")


@dataclass
class SvdLlmResult:
    """What one SVD-LLM run chose and measured."""

    ratio: float  # the uniform parameter ratio (fraction of each matrix's weights kept)
    ranks: dict[str, int] = field(default_factory=dict)  # factored linears only
    removed: int = 0
    # Σ_{i>k} σ_i² / Σ_i σ_i² of W·S: the share of each linear's whitened output energy truncated (= its loss)
    loss_share: dict[str, float] = field(default_factory=dict)
    damped: dict[str, float] = field(default_factory=dict)  # linears whose Gram needed damping, and how much


def _factor_block(
    model: nn.Module, layer: nn.Module, paths: dict[int, str], ranks: dict[str, int | None], stats, shifted, out
) -> None:
    """Replace the projections of one block by their whitened truncations (refit on ``shifted`` if given)."""
    whitening: dict[int, tuple[torch.Tensor, float]] = {}  # per input group: one Cholesky
    for lin in block_linears(model, layer):
        path = paths[id(lin)]
        k = ranks[path]
        if k is None:
            continue
        group = stats[lin]
        if id(group) not in whitening:
            whitening[id(group)] = cholesky_whitening(group.gram)
        s, damping = whitening[id(group)]
        f = svd_llm_factors(lin.weight, s, k)
        u = closed_form_u(lin.weight, f.v, shifted[lin].gram) if shifted is not None else f.u
        replace(model, path, LowRankLinear.from_factors(u, f.v, lin.bias))
        out.ranks[path] = k
        out.loss_share[path] = f.tail_energy(k) / max(f.tail_energy(0), 1e-300)
        if damping:
            out.damped[path] = damping


@torch.no_grad()
def compress_svd_llm(
    model: nn.Module,
    calib: torch.Tensor,
    budget: int | None,
    update: str = "none",
    batch_size: int = 8,
    keep: float | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, SvdLlmResult]:
    """Factor every decoder projection of ``model`` in place so that it loses ``budget`` parameters, or (``budget``
    None) at the parameter ratio ``keep`` (the release's ``1 − --ratio``) itself.

    Layer by layer: the model and the calibration activations stay where the model is (the host, for a GPU run:
    the method is ``offload``), and each block visits ``device`` (default: the model's) while its statistics are
    gathered and its projections factored, as the release's ``--run_low_resource`` profiling moves one layer at
    a time. At LLaMA-2-7B with paper.yaml's 256 × 2048 tokens the two activation streams take 2 × 4.3 GB in
    bfloat16, which beside a 13.5 GB model would not leave a 24 GB GPU room for the float64 Gram and SVD."""
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, not {update!r}")
    linears = decoder_linears(model)
    paths = {id(m): p for p, m in linears.items()}
    shapes = [(m.out_features, m.in_features) for m in linears.values()]
    ratio, rank_list = uniform_ratio(shapes, budget) if budget is not None else (keep, ranks_for_ratio(shapes, keep))
    ranks = dict(zip(linears, rank_list))
    out = SvdLlmResult(ratio=ratio)

    home = next(model.parameters()).device
    device = torch.device(device) if device is not None else home
    cal: Calibration = capture(model, calib, batch_size)
    hidden = cal.hidden  # dense stream: whitening statistics
    moved = cal.hidden if update == "closed-form" else None  # compressed stream: the update's inputs
    for i, layer in enumerate(get_adapter(model).layers()):
        layer.to(device)
        with recording(model, layer, gram=True) as stats:
            next_hidden = run_block(layer, i, hidden, cal)
        shifted = None
        if moved is not None:
            with recording(model, layer, gram=True) as shifted:
                run_block(layer, i, moved, cal)
        _factor_block(model, layer, paths, ranks, stats, shifted, out)
        if moved is not None:
            moved = run_block(layer, i, moved, cal)  # the block now holds its factored projections
        hidden = next_hidden
        layer.to(home)
    out.removed = sum(
        lin.out_features * lin.in_features - out.ranks[p] * (lin.out_features + lin.in_features)
        for p, lin in linears.items()
        if p in out.ranks
    )
    return model, out
