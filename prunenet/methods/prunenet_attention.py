"""PruneNet on self-attention (paper Table 20): whole KV groups drawn from a policy trained with ``state: qkv``.

What is pruned, the state, penalty, budget and checkpoint: :mod:`prunenet.attention_policy`. The ratio is the
fraction of the model's KV groups (so of its attention parameters) removed, not PruneNet's FFN parameter budget,
so this method stays out of the same-budget comparisons (``Method.same_budget``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import register
from .base import Method, PruneRequest

if TYPE_CHECKING:
    from torch import nn


def validate(request: PruneRequest) -> None:
    """An FFN policy is refused before the model loads."""
    from ..choices import ATTENTION_STATES
    from ..policy import check_policy_state

    check_policy_state(request.policy, PRUNENET_ATTENTION.name, ATTENTION_STATES)


def run(model: nn.Module, tokenizer: Any, request: PruneRequest) -> tuple[nn.Module, dict]:
    from ..attention_policy import prune_attention
    from ..policy import load_policy

    policy, meta = load_policy(request.policy, request.which)
    state = meta.get("config", {}).get("state")
    own = prune_attention(model, policy, float(request.ratio), request.seed)
    return model, own | {
        "policy": request.policy,
        "which": request.which,
        "state": state,
        "policy_trained_at": meta.get("config", {}).get("ratio"),
        "policy_eq3": meta.get("eq3"),
        "policy_train_seconds": meta.get("seconds"),
    }


PRUNENET_ATTENTION = register(
    Method(
        name="prunenet-attention",
        summary="whole attention KV groups drawn from a policy trained on q/k/v (calibration-free; paper T20)",
        run=run,
        needs_policy=True,
        validate=validate,
        policy_state="qkv",
        same_budget=False,
    ),
)
