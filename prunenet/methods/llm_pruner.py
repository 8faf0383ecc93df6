"""LLM-Pruner (Ma, Fang, Wang; NeurIPS 2023, arXiv 2305.11627) as a method: gradient-scored dependency groups.

1. **Groups** (:mod:`prunenet.structured.groups`): FFN channels (gate/up row + down column) and attention KV
   groups (a key/value head with its query heads' q rows and o columns).
2. **Importance** (:mod:`prunenet.structured.taylor`): Taylor terms of the calibration loss — ``element1``
   (default, the authors' ``param_first``), ``element2`` (Fisher-diagonal second order, ``param_mix``) or
   ``vector`` — per member, aggregated per group by ``sum`` (default), ``prod``, ``max`` or ``last``.
3. **Which layers, how much**: layers ``first`` … ``L − 1 − last`` are pruned (the paper keeps the first 4 and
   the last 2 of LLaMA-7B's 32 layers; the same counts here), each losing the same number of KV groups and FFN
   channels — the least important of that layer — chosen so the model loses PruneNet's parameter budget at the
   ratio (:mod:`prunenet.structured.budget` states the rule; at ``budget: ratio`` the release's own reading of the
   ratio, :func:`prunenet.structured.budget.nominal_plan`). ``structures: ffn`` prunes FFN channels only.

Calibration: the shared request windows (the release: 10 BookCorpus windows of 64 tokens; offline: WikiText-2
validation; :attr:`Method.release` below, rendered in results/tables/settings.md). Recovery (the paper's "w/ tune"
rows) is this workflow's RFT stage (``rft.methods: [llm-pruner]``): the checkpoint is a per-layer-shapes one that
:func:`prunenet.models.load_model` reads. Needs: calibration text and one backward pass per window (gradients of
the scored weights: about the model's size again in memory).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import PruneNetError
from . import register
from .base import EQUAL_SIZE, Budget, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def validate(request: PruneRequest) -> None:
    """Layer-range options that no model can make valid, before any model loads."""
    first, last = int(request.option("first", LLM_PRUNER)), int(request.option("last", LLM_PRUNER))
    if first < 0 or last < 0:
        raise PruneNetError(f"llm-pruner.first and llm-pruner.last must be >= 0, got {first}, {last}")


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    import torch

    from ..arch import get_adapter
    from ..slicing import prune_ffn
    from ..stats import count_params
    from ..structured.budget import settle
    from ..structured.groups import aggregate, attention_members, ffn_members, kept
    from ..structured.taylor import gradients, member_scores, scored_params
    from ..surgery import slice_attention

    opt = LLM_PRUNER.own_options(request)
    t0 = time.perf_counter()
    adapter = get_adapter(model)
    layers = list(adapter.layers())
    pruned = list(range(opt["first"], len(layers) - opt["last"]))
    if not pruned:
        raise PruneNetError(
            f"llm-pruner: first={opt['first']} and last={opt['last']} leave no layer of {len(layers)} to prune"
        )
    heads = opt["structures"] == "ffn+attention"
    dense = count_params(model)
    ffn = {i: ffn_members(model, layers[i]) for i in pruned}
    attn = {i: attention_members(model, layers[i]) for i in pruned} if heads else {}
    p, kv = _plan(budget, pruned, ffn, attn, heads)
    members = [m for i in pruned for m in ffn[i] + attn.get(i, [])]
    stats = gradients(model, request.calibration(tokenizer), scored_params(members), opt["importance"] == "element2")
    t1 = time.perf_counter()
    rows, groups_removed = [], {}
    for i, layer in enumerate(layers):
        if i not in ffn:
            rows.append(torch.arange(adapter.ffn(layer)[0].out_features))
            continue
        score = aggregate([member_scores(m, stats, opt["importance"]) for m in ffn[i]], opt["aggregation"])
        rows.append(kept(score, p.channels))
        if heads and p.heads:
            a_score = aggregate([member_scores(m, stats, opt["importance"]) for m in attn[i]], opt["aggregation"])
            keep = kept(a_score, p.heads)
            groups_removed[i] = sorted(set(range(kv)) - set(keep.tolist()))
            slice_attention(model, layer, keep)
    del stats
    prune_ffn(model, rows)  # records the widths (per_layer_shapes.mark)
    meta = settle(model, dense, budget.params, "llm-pruner") | {
        "pruned_layers": pruned,
        "kv_groups_removed_per_layer": p.heads,
        "channels_removed_per_layer": p.channels,
        "removed_kv_groups": groups_removed,
        "llm_pruner_options": opt,
        "stage_seconds": {"gradients": t1 - t0, "pruning": time.perf_counter() - t1},
    }
    return model, meta


# Where its release's values were read (Method.release).
RELEASE = "horseee/LLM-Pruner hf_prune.py"
README = "horseee/LLM-Pruner README.md (LLaMA-7B command)"

LLM_PRUNER = register(
    Method(
        name="llm-pruner",
        summary="FFN channels and attention KV groups scored by Taylor terms (needs calibration and gradients)",
        run=run,
        validate=validate,
        needs_calibration=True,
        budget=True,
        nominal="each pruned layer loses n - int(n (1 - r)) of its n FFN channels and the whole KV groups within q - "
        "int(q (1 - r)) of its q query rows (the release's --pruning_ratio)",
        stochastic=False,
        options=(
            Option(
                "importance",
                str,
                "element1",
                "Taylor importance: element1 (|g·w| per weight, first order), element2 (+ Fisher-diagonal second "
                "order) or vector (|g·w| of a whole row/column)",
                ("element1", "element2", "vector"),
            ),
            Option(
                "aggregation", str, "sum", "group importance from its members' (paper)", ("sum", "prod", "max", "last")
            ),
            Option(
                "structures",
                str,
                "ffn+attention",
                "ffn+attention (paper: heads and channels) or ffn (channels only, PruneNet's structures)",
                ("ffn+attention", "ffn"),
            ),
            Option("first", int, 4, "first layers left unpruned (paper: 4 of LLaMA-7B's 32)"),
            Option("last", int, 2, "last layers left unpruned (paper: 2)"),
        ),
        release=(
            Release(
                "budget",
                "ratio: --pruning_ratio of each pruned layer's gate_proj channels and q_proj heads (README: 0.25 "
                "for ~20 % of Llama's parameters)",
                RELEASE,
                EQUAL_SIZE + "; paper.yaml: ratio (paper Tables 4, 5)",
            ),
            Release(
                "importance",
                "param_first (--taylor default since e30a6f6; scripts/llama_prune.sh passes it too)",
                RELEASE,
            ),
            Release("aggregation", "sum (--grouping_strategy)", RELEASE),
            Release(
                "structures",
                "ffn+attention (--block_wise: q_proj head groups and gate_proj channels)",
                RELEASE,
            ),
            Release("first", "4 (--block_*_layer_start 4)", README),
            Release("last", "2 (--block_*_layer_end 30 of LLaMA-7B's 32)", README),
            Release(
                "calib_dataset",
                "bookcorpus (get_examples('bookcorpus', ...))",
                RELEASE,
                "no BookCorpus here (offline or as a corpus choice): WikiText-2",
            ),
            Release("calib_samples", "10 (get_examples(..., 10, seq_len=64))", RELEASE),
            Release("calib_seq_len", "64 (get_examples(..., seq_len=64))", RELEASE),
        ),
    ),
)


def _plan(budget: Budget, pruned: list[int], ffn: dict, attn: dict, heads: bool) -> tuple[Any, int]:
    """How many FFN channels (and KV groups) every pruned layer loses — to meet PruneNet's parameter count, or at
    the release's reading of the nominal ratio — and the KV group count; the layers share one shape, so the first
    pruned layer's groups size the plan."""
    from ..structured.budget import group_params, nominal_plan, plan

    probe = pruned[0]
    kv = attn[probe][0].index.shape[0] if heads else 1
    n_channels = ffn[probe][0].index.shape[0]
    attn_params = group_params(attn[probe]) if heads else 0
    channel_params = group_params(ffn[probe])
    if budget.nominal:
        q_rows = attn[probe][0].index.numel() if heads else 1
        return nominal_plan(budget.ratio, len(pruned), n_channels, channel_params, q_rows, kv, attn_params, heads), kv
    return plan(budget.params, len(pruned), n_channels, channel_params, kv, attn_params, heads), kv
