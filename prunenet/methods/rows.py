"""Shared by the row selectors (prunenet, deterministic, random): pick FFN rows, slice them out.

Each selector only differs in how rows are chosen (:func:`prunenet.policy.select_rows`); the
physical slicing (:mod:`prunenet.slicing`) and the checkpoint format are the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import PruneRequest

if TYPE_CHECKING:
    from torch import nn


def check_ffn_policy(request: PruneRequest) -> None:
    """A policy trained on attention (``state: qkv``) is refused before the model loads."""
    from ..choices import STATES
    from ..policy import check_policy_state

    check_policy_state(request.policy, "an FFN row selector", STATES)


def prune_rows(model: nn.Module, tokenizer: Any, request: PruneRequest, selector: str) -> tuple[nn.Module, dict]:
    """Slice every FFN to the rows ``selector`` keeps; the metadata says which rows and why."""
    from ..policy import load_policy
    from ..slicing import plan_rows, prune_ffn

    policy, policy_meta = (None, {})
    if selector != "random":
        policy, policy_meta = load_policy(request.policy, request.which)
    trained = policy_meta.get("config", {})
    state = trained.get("state", request.state)
    multiple = request.ffn_multiple
    rows = plan_rows(model, selector, request.ratio, policy, state=state, seed=request.seed, multiple=multiple)
    sizes = prune_ffn(model, rows)
    meta = {
        "ratio_spec": request.ratio.record,
        "layer_ratios": request.ratio.per_layer(len(sizes)),
        "policy": request.policy,
        "which": request.which,
        "state": state,
        "intermediate_sizes": sizes,
        "ffn_multiple": request.ffn_multiple,
        "policy_trained_at": trained.get("ratio"),
        "policy_eq3": policy_meta.get("eq3"),
        "policy_train_seconds": policy_meta.get("seconds"),  # part of the method's compression cost (Table 9)
    }
    return model, meta
