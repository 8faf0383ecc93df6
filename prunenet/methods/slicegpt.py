"""SliceGPT (Ashkboos et al., ICLR 2024) as a method: calibration windows, then rotate and slice.

The algorithm lives in :mod:`prunenet.slicegpt`; this entry picks the slicing ratio (by default
the one that puts SliceGPT on PruneNet's parameter budget, :mod:`prunenet.slicegpt.budget`; option
``budget: ratio`` slices the nominal ratio as the paper does), draws the calibration data and
records what was used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import register
from .base import CPU_WINDOWS, OFFLINE_SPLIT, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def slicing_ratio(model: nn.Module, request: PruneRequest, budget: int) -> tuple[float, dict]:
    """The fraction of the residual width to delete: the request's ratio, or (budget ``params``) the one whose
    sliced model keeps the parameter count PruneNet leaves at that ratio (:mod:`prunenet.slicegpt.budget`)."""
    if request.option("budget", SLICEGPT) == "ratio":
        return float(request.ratio), {"budget": "ratio"}
    from ..slicegpt.budget import width_for_params
    from ..stats import count_params

    target = count_params(model) - budget
    kept = width_for_params(model, target, request.round_to)
    d = model.config.hidden_size
    return 1.0 - kept / d, {"budget": "params", "param_target": target, "kept_width": kept}


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: int) -> tuple[nn.Module, dict]:
    from ..slicegpt import slice_model

    t0 = time.perf_counter()
    ratio, sizing = slicing_ratio(model, request, budget)
    calib = request.calibration(tokenizer)
    model = slice_model(
        model,
        tokenizer,
        ratio,
        calib,
        damping=request.damping,
        round_to=request.round_to,
        device=request.device,
    )
    meta = sizing | {"slicing_ratio": ratio, "slice_seconds": time.perf_counter() - t0}
    return model, meta


# Where its release's values were read (Method.release).
RELEASE = "microsoft/TransformerCompression experiments/run_slicegpt.py"

SLICEGPT = register(
    Method(
        name="slicegpt",
        summary="PCA rotation of the residual stream, then delete its trailing dimensions (needs calibration)",
        run=run,
        needs_calibration=True,
        budget=True,  # its default option slices to it (param_target); ``budget: ratio`` ignores it
        checkpoint="slicegpt",
        offload=True,
        stochastic=False,
        refuses=("gemma2", "gemma3_text"),  # post-norms on block outputs (arch/llama.py: tested equal)
        options=(
            Option(
                "budget",
                str,
                "params",
                "params: slice to the width whose model has PruneNet's parameter count at --ratio (fair budget); "
                "ratio: slice --ratio of the width (the paper's convention; shortcuts and an untied head make it "
                "larger)",
                choices=("params", "ratio"),
            ),
        ),
        release=(
            Release(
                "budget",
                "ratio: --sparsity of the hidden width, rounded down to --round-interval 8",
                RELEASE,
                "params: every method at PruneNet's parameter count, an equal-size comparison; paper.yaml: ratio",
            ),
            Release(
                "calib_dataset",
                "wikitext2, train split (--cal-dataset)",
                RELEASE,
                OFFLINE_SPLIT,
            ),
            Release(
                "calib_samples",
                "128 (--cal-nsamples default)",
                RELEASE,
                CPU_WINDOWS + "; paper.yaml had 1024 before issue 26 (not found in the release)",
            ),
            Release(
                "calib_seq_len",
                "2048 (--cal-max-seqlen)",
                RELEASE,
                CPU_WINDOWS,
            ),
        ),
    ),
)
