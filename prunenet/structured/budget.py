"""How many groups each pruned layer loses so the whole model loses a given number of parameters.

LLM-Pruner prunes every layer of its range by one ratio, applied to attention heads and FFN channels alike.
Under a parameter budget (PruneNet's at the same ratio) the two structures cannot always share one ratio:
a KV group is ~170 FFN channels' worth of weights on SmolLM2, so head counts move in large steps. The rule:

* every pruned layer loses the same ``h`` KV groups and ``c`` FFN channels;
* for each possible ``h`` (0 … KV − 1; only 0 with ``structures: ffn``), ``c`` is the channel count whose total
  removal is nearest the budget (0 ≤ c < n);
* of these, the pair whose two ratios ``h / KV`` and ``c / n`` are closest to each other is taken (ties: fewer
  heads): one ratio for both structures as far as a head's size allows, and the budget met to one channel per
  layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .groups import Member


def group_params(members: Sequence[Member]) -> int:
    """Parameters one group owns across its members (rows with their bias entries, or columns)."""
    total = 0
    for m in members:
        width = m.index.shape[1]
        if m.dim == 0:
            total += width * (m.linear.in_features + (1 if m.linear.bias is not None else 0))
        else:
            total += width * m.linear.out_features
    return total


@dataclass(frozen=True)
class Plan:
    """Groups removed per pruned layer and the total parameters that removes."""

    heads: int  # KV groups removed per pruned layer
    channels: int  # FFN channels removed per pruned layer
    removed: int


def plan(
    budget: int, layers: int, channels: int, channel_params: int, kv_groups: int, group_params_: int, heads: bool
) -> Plan:
    """The (KV groups, FFN channels) each of ``layers`` pruned layers loses to remove ~``budget`` parameters."""
    best: tuple[int, int, Plan] | None = None
    for h in range(kv_groups if heads else 1):
        rest = budget / layers - h * group_params_
        c = min(max(round(rest / channel_params), 0), channels - 1)
        p = Plan(h, c, layers * (h * group_params_ + c * channel_params))
        # |h/KV − c/n| scaled by KV·n: exact integers, so equal ratio distances do tie (and fewer heads win);
        # in floats 1/3 − 59/96 and 2/3 − 37/96 differ in the last bit and the tie went to more heads
        key = (abs(h * channels - c * kv_groups), h)
        # a head count that overshoots the budget even with no channel removed is never taken
        if rest < 0 and h > 0:
            continue
        if best is None or key < best[:2]:
            best = (*key, p)
    return best[2]


def nominal_plan(
    ratio: float,
    layers: int,
    channels: int,
    channel_params: int,
    q_rows: int,
    kv_groups: int,
    group_params_: int,
    heads: bool,
) -> Plan:
    """LLM-Pruner's own reading of ``--pruning_ratio`` r (hf_prune.py, torch-pruning's ``MetaPruner``): each pruned
    layer's gate_proj loses ``n − int(n·(1 − r))`` channels and its q_proj ``q − int(q·(1 − r))`` rows, taken as
    whole groups (``consecutive_groups``: the floor over a group's q rows; a KV group here, a head in the release's
    LLaMA, where the two coincide). At least one channel and one group stay."""
    c = min(channels - int(channels * (1 - ratio)), channels - 1)
    h = min((q_rows - int(q_rows * (1 - ratio))) // (q_rows // kv_groups), kv_groups - 1) if heads else 0
    return Plan(h, c, layers * (h * group_params_ + c * channel_params))


def settle(model: nn.Module, dense_params: int, budget: int | None, method: str) -> dict:
    """After a group method sliced ``model``: record each layer's KV heads in the config, refuse a missed budget
    (:func:`prunenet.lowrank.budget.check_budget`; None: a nominal ratio, nothing to meet), and return the size
    entries every such method reports."""
    from ..arch import get_adapter
    from ..checkpoints.per_layer_shapes import mark_heads
    from ..lowrank.budget import check_budget
    from ..stats import count_params

    adapter = get_adapter(model)
    layers = adapter.layers()
    kv_heads = [adapter.attention(layer).num_kv_heads for layer in layers]
    mark_heads(model, kv_heads)
    removed = dense_params - count_params(model)
    if budget is not None:
        check_budget(removed, budget, dense_params, method)
    return {
        "param_budget": budget,
        "params_removed": removed,
        "intermediate_sizes": [adapter.ffn(layer)[0].out_features for layer in layers],
        "kv_heads": kv_heads,
    }
