"""PruneNet (ICLR 2025): FFN rows drawn from the trained policy (paper Eq. 4, Algorithm 1)."""

from __future__ import annotations

from . import register
from .base import Method
from .rows import check_ffn_policy, prune_rows

register(
    Method(
        name="prunenet",
        summary="FFN rows drawn from the learned policy (calibration-free)",
        run=lambda model, tok, req: prune_rows(model, tok, req, "policy"),
        needs_policy=True,
        validate=check_ffn_policy,
        per_layer=True,
    ),
)
