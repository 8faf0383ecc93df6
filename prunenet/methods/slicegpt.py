"""SliceGPT (Ashkboos et al., ICLR 2024) as a method: calibration windows, then rotate and slice.

The algorithm lives in :mod:`prunenet.slicegpt`; this entry draws the calibration data and
records what was used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import METHODS
from .base import Method, PruneRequest

if TYPE_CHECKING:
    from torch import nn


def run(model: nn.Module, tokenizer: Any, request: PruneRequest) -> tuple[nn.Module, dict]:
    from ..slicegpt import slice_model

    t0 = time.perf_counter()
    calib = request.calibration(tokenizer)
    model = slice_model(
        model,
        tokenizer,
        request.ratio,
        calib,
        damping=request.damping,
        round_to=request.round_to,
        device=request.device,
    )
    meta = request.calibration_meta() | {"slice_seconds": time.perf_counter() - t0}
    return model, meta


METHODS.register(
    "slicegpt",
    Method(
        name="slicegpt",
        summary="PCA rotation of the residual stream, then delete its trailing dimensions (needs calibration)",
        run=run,
        needs_calibration=True,
        checkpoint="prunenet.slicegpt.checkpoint",
        offload=True,
        stochastic=False,
    ),
)
