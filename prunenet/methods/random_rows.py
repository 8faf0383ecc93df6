"""Selector ablation (paper T16): uniformly random FFN rows, no policy."""

from __future__ import annotations

from . import register
from .base import Method
from .rows import prune_rows

register(
    Method(
        name="random",
        summary="uniformly random FFN rows (ablation)",
        run=lambda model, tok, req: prune_rows(model, tok, req, "random"),
        per_layer=True,
    ),
)
