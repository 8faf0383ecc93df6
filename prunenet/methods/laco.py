"""LaCo (Yang, Cao, Zhao 2024, arXiv 2402.11187) as a method: collapse runs of decoder layers by RDSC merging.

Algorithm 1 of the paper (:func:`prunenet.layer_collapse.layer_collapse`) walks down from the top layers,
merging C layers into one wherever the merged model's last-layer representation of a few calibration
windows stays cosine-similar to the dense model's (s > T). As for ShortGPT, the number of layers to remove
is the whole-layer count whose parameters come nearest to what PruneNet removes at the same ratio
(:func:`prunenet.budget.ffn_rows_budget`, :func:`prunenet.depth.layers_for_budget`); the walk stops as soon as
that many are gone (the last merge combines fewer than C layers if fewer remain; at ``budget: ratio``,
⌊r·L⌋ layers, :func:`prunenet.depth.nominal_layers`), and a walk that ends short
is repeated from the dense model at T − step (the paper tunes T per target ratio) until one reaches it. The
result is a plain ``from_pretrained`` checkpoint with fewer layers.

Defaults are the paper's Llama2-7B settings where it gives them (C = 4, I = 2, T = 0.65); the range is
``lowest`` … last layer − ``keep_last`` so one setting fits any depth (``lowest`` = 2 keeps the first two
layers, which depth-pruning studies find the least redundant, out of every merge; ``keep_last`` = 1 as the
authors' code, whose walk starts below the last layer). Calibration is the shared request fields (the
authors' code uses five short Wikipedia sentences: a few windows suffice, and every candidate costs a forward
of the layers from its position up).

On small models a C = 4 merge can be far from its parts: on SmolLM2-135M (30 layers) every 4-layer RDSC
merge has s <= 0.2, so T relaxes to 0.15-0.2 at r = 0.2 and to 0 at r = 0.3, while 2-layer merges keep
s >= 0.70 down to layer 15 at T = 0.65. The threshold finally used is in the meta (``threshold_used``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import PruneNetError
from . import register
from .base import EQUAL_SIZE, NOT_CHECKED, Budget, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn

    from ..layer_collapse import Walk

OPTIONS = (
    Option("merge", int, 4, "C: layers combined into one per merge (removes C-1; paper: 4)"),
    Option("lowest", int, 2, "H: lowest layer index a merge may start at (layers below it are never merged)"),
    Option("keep_last", int, 1, "top layers never merged (range top = last layer - keep_last; authors' code: 1)"),
    Option("interval", int, 2, "I: minimum distance down to the next merge after an accepted one (paper: 2)"),
    Option("threshold", float, 0.65, "T: accept a merge when its representation similarity exceeds T (paper: 0.65)"),
    Option("threshold_step", float, 0.05, "lower T by this and restart when a pass removes too few layers"),
)


def validate(request: PruneRequest) -> None:
    """The walk's settings and the threshold step, checked before any model loads (the range needs the depth)."""
    from ..layer_collapse import Walk

    opt = {o.name: request.option(o.name, LACO) for o in OPTIONS}
    walk = Walk(merge=opt["merge"], lowest=opt["lowest"], keep_last=opt["keep_last"], interval=opt["interval"])
    walk.check_settings()
    if opt["threshold_step"] <= 0:
        raise PruneNetError(f"laco.threshold_step must be positive, got {opt['threshold_step']}")


def walk_for(n_layers: int, opt: dict) -> Walk:
    """The walk over a model of ``n_layers`` layers with the options ``opt``: a group never spans more than the
    mergeable range (a shallow model: C layers may not fit at all; an invalid C or range is refused by
    :func:`prunenet.layer_collapse.check_collapse`)."""
    from ..layer_collapse import Walk

    span = n_layers - opt["keep_last"] - opt["lowest"]
    merge = min(opt["merge"], span) if span >= 2 else opt["merge"]
    return Walk(merge=merge, lowest=opt["lowest"], keep_last=opt["keep_last"], interval=opt["interval"])


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    import torch

    from ..arch import get_adapter
    from ..depth import layers_for_budget, nominal_layers
    from ..layer_collapse import apply_collapse, check_collapse, layer_collapse
    from ..stats import count_params

    opt = {o.name: request.option(o.name, LACO) for o in OPTIONS}
    t0 = time.perf_counter()
    dense_params = count_params(model)
    layer_params = [count_params(layer) for layer in get_adapter(model).layers()]
    if budget.nominal:
        n_remove = nominal_layers(budget.ratio, len(layer_params))
    else:  # equal scores: only the count is taken from the budget rule; which layers go is the walk's to decide
        n_remove = len(layers_for_budget(torch.zeros(len(layer_params)), layer_params, budget.params))
    walk = walk_for(len(layer_params), opt)
    merge = walk.merge
    check_collapse(len(layer_params), n_remove, walk, opt["threshold_step"])
    blocks = request.calibration(tokenizer) if n_remove else None
    collapse = layer_collapse(model, blocks, n_remove, walk, threshold=opt["threshold"], step=opt["threshold_step"])
    apply_collapse(model, collapse)
    meta = {
        "merges": [{"base": m.base, "layers": m.layers, "similarity": round(m.similarity, 6)} for m in collapse.merges],
        "merged_groups": collapse.groups,
        "removed_layers": sorted(i for group in collapse.groups for i in group[1:]),
        "layers_removed": collapse.removed,
        "threshold_used": collapse.threshold,
        "threshold_passes": collapse.passes,
        "candidates_evaluated": collapse.candidates,
        "final_pass": collapse.trace,
        "laco_options": opt,
        "merge_used": merge,
        "param_budget": budget.params,
        "params_removed": dense_params - count_params(model),
        "score_seconds": time.perf_counter() - t0,
    }
    return model, meta


LACO = register(
    Method(
        name="laco",
        summary="merge runs of decoder layers into one by RDSC (LaCo layer collapse; needs calibration)",
        run=run,
        validate=validate,
        needs_calibration=True,
        budget=True,
        nominal="floor(r L) of the L decoder layers removed by the walk (the release sets no ratio: its threshold "
        "ends the walk)",
        checkpoint="hf",
        stochastic=False,
        options=OPTIONS,
        release=(
            Release(
                "budget",
                "no ratio: the walk runs to the lowest layer and its threshold decides how many layers merge",
                "yangyifei729/LaCo laco_llama-13b.ipynb",
                EQUAL_SIZE + "; paper.yaml: ratio (paper Table 4)",
            ),
            *(
                Release(key, NOT_CHECKED, "no public release found (GitHub code search, 2026-12-02)")
                for key in [o.name for o in OPTIONS] + ["calib_dataset", "calib_samples", "calib_seq_len"]
            ),
        ),
    ),
)
