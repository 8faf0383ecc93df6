"""ASVD's sensitivity-based truncation rank searching (STRS; Yuan et al. 2023).

For every linear ``l`` and every candidate parameter ratio ``r`` (the paper's list: 0.1, 0.2, …, 0.9), the
calibration perplexity of the model in which only ``l`` is truncated to ``r`` is its sensitivity
``s(l, r)``. All pairs are sorted by sensitivity; a threshold ``τ`` gives each linear the smallest ratio with
``s(l, r) ≤ τ`` (dense if none), and a binary search over ``τ`` (over positions of the sorted list) finds the
threshold whose total parameter count meets the target (:func:`select`). Perplexity is ``exp`` of the mean
token loss, a monotone map, so the losses are sorted directly.

Cost. 7 linears × 9 candidates per block make ~2k model evaluations on SmolLM2-135M. Nothing in what is
measured changes, but each evaluation is cheaper:

* the hidden states entering each block on the sensitivity windows are computed once (dense model), and a
  candidate for a linear of block ``i`` runs only blocks ``i…L−1`` and the head (:func:`tail_losses`: the
  model's own forward with the earlier blocks removed and block ``i``'s input injected, so masks, positions,
  final norm and head are exactly the model's);
* the candidates of one linear share one SVD (the √Σ split makes rank ``k`` a prefix of the largest one) and
  one batched forward per window: chunk ``c`` of the batch goes through candidate ``c`` (:class:`CandidateLinear`).

The cost is then linear in the sensitivity tokens (``sens_samples × sens_seq_len``); nothing exact is left to
cut per token: every block after the truncated linear and the head's full softmax depend on the candidate.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import get_adapter
from .factor import Factors


class CandidateLinear(nn.Module):
    """Several truncations of one linear at once: chunk ``c`` of the batch is multiplied by candidate ``c``."""

    def __init__(self, factors: Factors, ranks: Sequence[int], bias: torch.Tensor | None):
        super().__init__()
        self.factors, self.ranks, self.bias = factors, list(ranks), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for xc, k in zip(x.chunk(len(self.ranks), dim=0), self.ranks):
            u, v = self.factors.prefix(k)
            outs.append(F.linear(F.linear(xc, v), u, self.bias))
        return torch.cat(outs, dim=0)


@torch.no_grad()
def tail_losses(model: nn.Module, start: int, hidden: torch.Tensor, ids: torch.Tensor, copies: int) -> torch.Tensor:
    """Mean next-token loss of each of ``copies`` chunks, running blocks ``start…`` on ``hidden`` then the head.

    ``hidden`` (``[n, seq, d]``) is what enters block ``start`` on ``ids`` (``[n, seq]``). One window at a time
    (every window has ``seq − 1`` predictions, so the mean of the windows' means is the mean over all tokens): a
    forward holds ``copies × seq`` tokens and their logits whatever ``n`` is, as the release's one window per
    evaluation, and the loss takes one copy's logits to float32 at a time (LLaMA-2-7B, 9 candidates × 2048 tokens:
    0.26 GB each instead of 2.4 GB, and as much again for the log-softmax). Returns float64 ``[copies]``.
    """
    total = torch.zeros(copies, dtype=torch.float64)
    for h, x in zip(hidden.split(1), ids.split(1)):
        total += _window_losses(model, start, h, x, copies)
    return total / ids.shape[0]


def _window_losses(model: nn.Module, start: int, hidden: torch.Tensor, ids: torch.Tensor, copies: int) -> torch.Tensor:
    """:func:`tail_losses` of one window: ``hidden`` and ``ids`` are repeated ``copies`` times along the batch,
    so a :class:`CandidateLinear` in block ``start`` (or later) sees one copy per candidate."""
    adapter = get_adapter(model)
    layers = list(adapter.layers())
    device = next(model.parameters()).device  # the window may wait on the host (block_inputs)
    rep_ids = ids.to(device).repeat(copies, 1)
    rep_hidden = hidden.to(device).repeat(copies, 1, 1)

    def inject(_mod, args, kwargs):
        if args:
            return (rep_hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": rep_hidden}

    adapter.set_layers(layers[start:])
    handle = layers[start].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        logits = model(input_ids=rep_ids, use_cache=False).logits
    finally:
        handle.remove()
        adapter.set_layers(layers)
    out = torch.empty(copies, dtype=torch.float64)
    for c in range(copies):  # one copy's float32 logits and log-softmax at a time, not all copies' at once
        loss = F.cross_entropy(logits[c, :-1].float(), rep_ids[c, 1:], reduction="none")  # [seq - 1]
        out[c] = loss.double().mean().cpu()
    return out


def select(
    losses: Mapping[str, Sequence[float]], savings: Mapping[str, Sequence[int]], budget: int
) -> tuple[dict[str, int | None], float, int]:
    """STRS's threshold: each linear's candidate index (None: dense), the threshold loss, the removal.

    ``losses[l][c]`` is the sensitivity of linear ``l`` at candidate ratio ``c`` (ratios ascending) and
    ``savings[l][c]`` the parameters that truncation saves. The pairs sorted by loss (ties: linear order, then
    ratio) are admitted in order; with the first ``j`` admitted each linear takes its smallest admitted ratio,
    so the removal grows with ``j``. A binary search finds the first ``j`` whose removal reaches ``budget``;
    ``j`` or ``j − 1``, whichever removal is nearer the budget (ties: the smaller), is the answer.
    """
    names = list(losses)
    entries = sorted((float(loss), n, c) for n, name in enumerate(names) for c, loss in enumerate(losses[name]))

    def choice(j: int) -> dict[str, int | None]:
        best: dict[str, int | None] = dict.fromkeys(names)
        for _, n, c in entries[:j]:
            cur = best[names[n]]
            best[names[n]] = c if cur is None else min(cur, c)
        return best

    def removal(j: int) -> int:
        return sum(savings[name][c] for name, c in choice(j).items() if c is not None)

    j = bisect.bisect_left(range(len(entries) + 1), budget, key=removal)
    j = min(j, len(entries))
    if j > 0 and abs(removal(j - 1) - budget) <= abs(removal(j) - budget):
        j -= 1
    threshold = entries[j - 1][0] if j > 0 else float("-inf")
    return choice(j), threshold, removal(j)
