"""Dependency groups: the coupled weights that structured pruning must remove together (LLM-Pruner, Sec. 3.1).

Removing one structure of a decoder layer changes the shapes of others; a *group* is everything that goes at once:

* **FFN channel** ``c``: row ``c`` of the up (and gate) projection with its bias entries, column ``c`` of down.
* **Attention KV group** ``g``: key/value head ``g`` (its ``head_dim`` rows of k and v) and the ``G`` query heads
  that read it (their rows of q, their columns of o), ``G = heads / kv_heads``. A query head alone could go only
  if every KV group lost the same number (HF's attention keeps one ``num_key_value_groups`` per layer), so the
  unit is the whole group; with multi-head attention (``G = 1``) a group is one head.

Each group's *members* are ``(linear, dim, index)``: the rows (``dim`` 0) or columns (``dim`` 1) of a linear that
belong to it. Importance scores are per member (:mod:`prunenet.structured.taylor`) and aggregated per group here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..arch import get_adapter
from ..errors import PruneNetError
from ..surgery import blocks

AGGREGATIONS = ("sum", "prod", "max", "last")


@dataclass(frozen=True)
class Member:
    """Rows (``dim`` 0, bias entries included) or columns (``dim`` 1) of one linear, per group: ``index[g]``."""

    linear: nn.Linear
    dim: int
    index: torch.Tensor  # [groups, width]: the rows/columns of each group


def ffn_members(model: nn.Module, layer: nn.Module) -> list[Member]:
    """The FFN channel groups of ``layer`` (one channel each), in execution order (down last)."""
    up, gate, down = get_adapter(model).ffn(layer)
    idx = torch.arange(up.out_features)[:, None]
    members = [Member(gate, 0, idx)] if gate is not None else []
    return members + [Member(up, 0, idx), Member(down, 1, idx)]


def attention_members(model: nn.Module, layer: nn.Module) -> list[Member]:
    """The KV groups of ``layer``'s self-attention, in execution order (o last)."""
    a = get_adapter(model).attention(layer)
    q = blocks(a.num_kv_heads, a.group_size * a.head_dim)
    kv = blocks(a.num_kv_heads, a.head_dim)
    return [Member(a.q, 0, q), Member(a.k, 0, kv), Member(a.v, 0, kv), Member(a.o, 1, q)]


def aggregate(scores: Sequence[torch.Tensor], how: str) -> torch.Tensor:
    """One importance per group from its members' (each ``[groups]``, execution order): LLM-Pruner's choices
    of summation, product, max, or the last member only."""
    stack = torch.stack([s.double() for s in scores])
    if how == "sum":
        return stack.sum(0)
    if how == "prod":
        return stack.prod(0)
    if how == "max":
        return stack.max(0).values
    if how == "last":
        return stack[-1]
    raise PruneNetError(f"unknown aggregation {how!r}: choose one of {', '.join(AGGREGATIONS)}")


def kept(scores: torch.Tensor, remove: int) -> torch.Tensor:
    """Indices of the groups kept when the ``remove`` least important go (ascending; ties: lower index kept)."""
    if not 0 <= remove < scores.numel():
        raise PruneNetError(f"cannot remove {remove} of {scores.numel()} groups (at least one must stay)")
    order = torch.sort(scores, stable=True, descending=True).indices
    return order[: scores.numel() - remove].sort().values
