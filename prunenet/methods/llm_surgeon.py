"""The LLM Surgeon, structured (van der Ouderaa, Nagel, van Baalen, Asano, Blankevoort; ICLR 2024,
arXiv 2312.17244) as a method: curvature-based removal of FFN channels and attention KV groups with weight updates.

Each **shot** ``s = 1 … shots`` (default 5):

1. K-FAC factors ``A``, ``G`` of every down and o projection on the calibration windows, on the model as
   the previous shots left it (curvature re-estimated between shots, as the paper's multi-shot schedule);
2. the OBS cost of removing each remaining structure alone (:mod:`prunenet.structured.surgeon`): an FFN
   channel = one input column of down, a KV group = the o columns its query heads write;
3. a **global threshold** over all layers: structures in increasing cost are taken until the model has lost
   ``s / shots`` of the parameter budget (PruneNet's at the ratio, or at ``budget: ratio`` r of the decoder
   projections' weights as the release's ``--sparsity``; every layer keeps at least one channel and one KV group),
   so layers lose different amounts;
4. each layer's chosen columns are removed together with the correlated OBS update of the rest of its weight
   matrix, and the structures are sliced out physically (gate/up rows and q/k/v rows go with their columns).

Not done: the paper's optional first-order LoRA updates between shots (this workflow's RFT stage recovers
instead) and unstructured/semi-structured modes. Needs: calibration text, one forward+backward per window and
shot, and ``A``/``G`` in float64 for every pruned projection (SmolLM2-135M: ~0.7 GB). Checkpoints are per-layer
shapes (:mod:`prunenet.checkpoints.per_layer_shapes`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import PruneNetError
from . import register
from .base import CPU_WINDOWS, EQUAL_SIZE, OFFLINE_SPLIT, Budget, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def validate(request: PruneRequest) -> None:
    shots, damping = int(request.option("shots", LLM_SURGEON)), float(request.option("damping", LLM_SURGEON))
    if shots < 1:
        raise PruneNetError(f"llm-surgeon.shots must be at least 1, got {shots}")
    if damping <= 0:
        raise PruneNetError(f"llm-surgeon.damping must be positive, got {damping}")


def _candidates(model: nn.Module, stats: dict, heads: bool, damping: float) -> tuple[list, dict]:
    """(cost, layer, kind, index) of every removable structure, and each layer's inverse A per kind.

    Consumes ``stats``: each layer's factors are dropped once inverted, so the host holds the factors of the
    layers not yet reached and the inverses of those passed, not both for every layer (LLaMA-2-7B in float64:
    1.37 GB of A and G per layer, 1.1 GB of inverses; about 44 GB at the peak instead of 79 GB)."""
    import torch

    from ..arch import get_adapter
    from ..structured.groups import attention_members
    from ..structured.surgeon import column_blocks_cost, single_column_cost

    adapter = get_adapter(model)
    out, inverses = [], {}
    for i, layer in enumerate(adapter.layers()):
        down = adapter.ffn(layer)[2]
        a, g = stats.pop(("ffn", i)).factors(damping)
        a_inv = torch.linalg.inv(a)
        inverses[("ffn", i)] = a_inv
        out += [(float(c), i, "ffn", j) for j, c in enumerate(single_column_cost(down.weight.detach().cpu(), a_inv, g))]
        if heads:
            lay = adapter.attention(layer)
            a, g = stats.pop(("attn", i)).factors(damping)
            a_inv = torch.linalg.inv(a)
            inverses[("attn", i)] = a_inv
            blocks = attention_members(model, layer)[-1].index  # o's column block of each KV group
            costs = column_blocks_cost(lay.o.weight.detach().cpu(), a_inv, g, blocks)
            out += [(float(c), i, "attn", j) for j, c in enumerate(costs)]
    return sorted(out), inverses


def _choose(model: nn.Module, ranked: list, heads: bool, removed: int, target: int) -> tuple[dict, int]:
    """The global threshold: cheapest structures first until ``target`` parameters are gone in all (each layer
    keeps one channel and one KV group); returns ``{(kind, layer): [indices]}`` and the new removal."""
    from ..arch import get_adapter
    from ..structured.budget import group_params
    from ..structured.groups import attention_members, ffn_members

    adapter = get_adapter(model)
    size, left = {}, {}
    for i, lay in enumerate(adapter.layers()):
        size[("ffn", i)], left[("ffn", i)] = group_params(ffn_members(model, lay)), adapter.ffn(lay)[0].out_features
        if heads:
            size[("attn", i)] = group_params(attention_members(model, lay))
            left[("attn", i)] = adapter.attention(lay).num_kv_heads
    chosen: dict[tuple, list[int]] = {}
    for _cost, i, kind, j in ranked:
        if removed >= target:
            break
        if left[(kind, i)] <= 1:
            continue
        chosen.setdefault((kind, i), []).append(j)
        left[(kind, i)] -= 1
        removed += size[(kind, i)]
    if removed < target:
        raise PruneNetError("llm-surgeon cannot meet the budget while every layer keeps a channel: lower --ratio")
    return chosen, removed


def _operate(model: nn.Module, chosen: dict, inverses: dict) -> list[int]:
    """Remove the chosen columns of down / o with the correlated OBS update, then slice the structures out."""
    import torch

    from ..arch import get_adapter
    from ..slicing import prune_ffn
    from ..structured.groups import attention_members
    from ..structured.surgeon import remove_columns
    from ..surgery import slice_attention

    adapter = get_adapter(model)
    rows = []
    for i, layer in enumerate(adapter.layers()):
        up, _, down = adapter.ffn(layer)
        drop = sorted(chosen.get(("ffn", i), []))
        if drop:
            w = remove_columns(down.weight.detach().cpu(), inverses[("ffn", i)], torch.tensor(drop))
            down.weight.data.copy_(w.to(down.weight.device))
        rows.append(torch.tensor(sorted(set(range(up.out_features)) - set(drop))))
        groups = sorted(chosen.get(("attn", i), []))
        if groups:
            lay = adapter.attention(layer)
            cols = attention_members(model, layer)[-1].index[groups].flatten()
            w = remove_columns(lay.o.weight.detach().cpu(), inverses[("attn", i)], cols)
            lay.o.weight.data.copy_(w.to(lay.o.weight.device))
            slice_attention(model, layer, torch.tensor(sorted(set(range(lay.num_kv_heads)) - set(groups))))
    return prune_ffn(model, rows)


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    from ..arch import get_adapter
    from ..stats import count_params
    from ..structured.budget import settle
    from ..structured.surgeon import estimate

    opt = LLM_SURGEON.own_options(request)
    heads = opt["structures"] == "ffn+attention"
    t0 = time.perf_counter()
    adapter = get_adapter(model)
    dense = count_params(model)
    total = nominal_target(model, budget.ratio) if budget.nominal else budget.params
    blocks = request.calibration(tokenizer)
    shots, removed = [], 0
    for s in range(1, opt["shots"] + 1):
        linears = {("ffn", i): adapter.ffn(lay)[2] for i, lay in enumerate(adapter.layers())}
        if heads:
            linears |= {("attn", i): adapter.attention(lay).o for i, lay in enumerate(adapter.layers())}
        on_host = opt["activations"] == "host"
        kfac = dict(zip(linears, estimate(model, list(linears.values()), blocks, activations_on_host=on_host)))
        ranked, inverses = _candidates(model, kfac, heads, opt["damping"])  # empties kfac
        target = round(total * s / opt["shots"])
        chosen, removed = _choose(model, ranked, heads, removed, target)
        _operate(model, chosen, inverses)
        shots.append(
            {
                "shot": s,
                "target": target,
                "removed": dense - count_params(model),
                "channels": sum(len(v) for k, v in chosen.items() if k[0] == "ffn"),
                "kv_groups": sum(len(v) for k, v in chosen.items() if k[0] == "attn"),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    meta = settle(model, dense, budget.params, "llm-surgeon") | {
        "shots": shots,
        "llm_surgeon_options": opt,
    }
    if budget.nominal:
        meta["param_target"] = total
    return model, meta


def nominal_target(model: nn.Module, ratio: float) -> int:
    """The removal ``budget: ratio`` asks for: ``int(r · Σ weights and biases of every decoder projection)``, the
    release's structured target (threshold.py ``structured_threshold``: ``int(target_sparsity · total_params)``)."""
    from ..lowrank.layers import decoder_linears

    lins = decoder_linears(model).values()
    return int(ratio * sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in lins))


# Where its release's values were read (Method.release).
RELEASE = "Qualcomm-AI-research/llm-surgeon surgeon.py"
SCRIPT = "Qualcomm-AI-research/llm-surgeon scripts/structured/surgeon.sh"

LLM_SURGEON = register(
    Method(
        name="llm-surgeon",
        summary="LLM Surgeon: FFN channels and KV groups by K-FAC OBS cost, weights updated, multi-shot "
        "(needs calibration and gradients)",
        run=run,
        validate=validate,
        needs_calibration=True,
        budget=True,
        nominal="structures removed until int(r x the decoder projections' weights and biases) are gone (the "
        "release's --sparsity)",
        stochastic=False,
        options=(
            Option("shots", int, 5, "shots: curvature re-estimated and 1/shots of the budget removed in each"),
            Option(
                "structures",
                str,
                "ffn+attention",
                "ffn+attention (FFN channels and KV groups) or ffn (channels only, PruneNet's structures)",
                ("ffn+attention", "ffn"),
            ),
            Option("damping", float, 0.01, "λ: A and G get λ·mean(diag) on the diagonal"),
            Option(
                "activations",
                str,
                "device",
                "where the backward's saved activations wait: device, or host (copied there as made: LLaMA-2-7B's "
                "2048-token windows fit a 24 GB GPU, slower by the copies; same factors)",
                ("device", "host"),
            ),
        ),
        release=(
            Release(
                "budget",
                "ratio: --sparsity, the share of every decoder linear's weights removed (structured_threshold)",
                "Qualcomm-AI-research/llm-surgeon threshold.py",
                EQUAL_SIZE + "; paper.yaml too (not in the paper's tables)",
            ),
            Release(
                "shots",
                "40 (--shots 40; also surgeon.py's default)",
                SCRIPT,
                "each shot re-estimates K-FAC on every window: 5 keeps the CPU job in minutes; paper.yaml: 40",
            ),
            Release(
                "structures",
                "row and column structures of every projection (--structures row column)",
                SCRIPT,
                "the release masks each matrix's rows and columns on their own (pruner.py: mask = row OR column) "
                "and saves zeros at the dense shapes; a down/o row or a q/k/v/gate/up column is a residual-stream "
                "dimension of one matrix, which no smaller Llama can hold, so only the sliceable structures (FFN "
                "channels = gate/up rows + down columns, KV groups = their q/k/v rows + o columns) are removed",
            ),
            Release(
                "damping",
                "0.01 for G and A (--damp_g, --damp_a; their scaling not checked)",
                RELEASE,
            ),
            Release(
                "activations",
                "device (one forward+backward of the whole model per window on the GPU)",
                RELEASE,
                "paper.yaml: host, so that LLaMA-2-7B's 2048-token windows fit a 24 GB GPU (docs/scale.md); "
                "the factors do not change",
            ),
            Release(
                "calib_dataset",
                "wikitext2, train split (--train_lang)",
                SCRIPT,
                OFFLINE_SPLIT,
            ),
            Release("calib_samples", "128 (--nsamples)", RELEASE, CPU_WINDOWS),
            Release(
                "calib_seq_len",
                "the model's: 4096 for LLaMA, max_position_embeddings (2048) for OPT (get_model)",
                RELEASE,
                CPU_WINDOWS + "; one length per method here, so paper.yaml's 2048 is OPT's, not LLaMA's 4096",
            ),
        ),
    ),
)
