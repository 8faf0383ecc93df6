"""Selector ablation (paper T17): the policy's top-k rows instead of a stochastic draw."""

from __future__ import annotations

from . import register
from .base import Method
from .rows import check_ffn_policy, prune_rows

register(
    Method(
        name="deterministic",
        summary="top-k rows of the learned policy's importances (ablation)",
        run=lambda model, tok, req: prune_rows(model, tok, req, "deterministic"),
        needs_policy=True,
        validate=check_ffn_policy,
        per_layer=True,
    ),
)
