"""SliceGPT (Ashkboos et al., ICLR 2024) as a method: calibration windows, then rotate and slice.

The algorithm lives in :mod:`prunenet.slicegpt`; this entry picks the slicing ratio (by default
the one that puts SliceGPT on PruneNet's parameter budget, :mod:`prunenet.slicegpt.budget`; at
``budget: ratio`` the nominal ratio as the paper does), draws the calibration data and
records what was used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import register
from .base import CPU_WINDOWS, EQUAL_SIZE, OFFLINE_SPLIT, Budget, Method, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def slicing_ratio(model: nn.Module, request: PruneRequest, budget: Budget) -> tuple[float, dict]:
    """The fraction of the residual width to delete: the nominal ratio itself, or the one whose sliced model keeps
    the parameter count PruneNet leaves at that ratio (:mod:`prunenet.slicegpt.budget`)."""
    if budget.nominal:
        return budget.ratio, {"budget": "ratio"}
    from ..slicegpt.budget import width_for_params
    from ..stats import count_params

    target = count_params(model) - budget.params
    kept = width_for_params(model, target, request.round_to)
    d = model.config.hidden_size
    return 1.0 - kept / d, {"budget": "params", "param_target": target, "kept_width": kept}


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
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
        budget=True,
        checkpoint="slicegpt",
        offload=True,
        stochastic=False,
        refuses=("gemma2", "gemma3_text"),  # post-norms on block outputs (arch/llama.py: tested equal)
        nominal="r of the hidden width sliced off, the kept width rounded down to a multiple of --round-to (the "
        "release's --sparsity, --round-interval)",
        release=(
            Release(
                "budget",
                "ratio: --sparsity of the hidden width, rounded down to --round-interval 8",
                RELEASE,
                EQUAL_SIZE + "; paper.yaml: ratio (paper Tables 2, 4, 5)",
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
