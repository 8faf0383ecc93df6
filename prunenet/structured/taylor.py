"""LLM-Pruner's importance estimation (Ma et al., NeurIPS 2023, Sec. 3.2): Taylor terms of the calibration loss.

Removing weights ``w`` (setting them to 0) changes the loss ``L`` by ``ΔL ≈ −gᵀw + ½ wᵀHw`` with ``g = ∂L/∂W``.
The paper scores a structure by ``|ΔL|``, either

* **vector-wise** — the whole member (a row or a column of a linear) as one vector: ``I = |Σ_k g_k w_k|``
  (first order); or
* **element-wise** — each weight alone, summed over the member: ``I = Σ_k |g_k w_k|`` (first order, "Element¹"),
  or ``Σ_k |g_k w_k − ½ H_kk w_k²|`` (second order, "Element²"), the Hessian's diagonal approximated by the
  Fisher information ``H_kk ≈ (1/N) Σ_s g_{s,k}²`` over the ``N`` calibration samples.

``L`` is the mean next-token loss over all calibration samples; ``g`` its gradient (the mean of the per-sample
gradients ``g_s``). Each sample gets its own backward pass, so ``g`` and the Fisher diagonal come from the same
passes; only the weights being scored get gradients, and each is folded into the sums as soon as autograd has
accumulated it (a post-accumulate-grad hook) and then freed, so the model's ``.grad`` tensors never all exist at
once. The sums (float64 per scored weight: twice a float32 model, four times a bfloat16 one) live in host memory
whatever the model's device, so on a GPU the device holds the model, one window's activations and one gradient at
a time: LLaMA-2-7B's sums (~42 GB with LLM-Pruner's first 4 and last 2 layers unscored) would not fit beside
its 13.5 GB of bfloat16 weights on a 24 GB card. A float64 addition is exact-rounded on either side, so the scores
are the same as with sums on the device.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PruneNetError
from .groups import Member

IMPORTANCES = ("element1", "element2", "vector")
HOST = torch.device("cpu")


def _host_zeros(p: torch.Tensor) -> torch.Tensor:
    return torch.zeros(p.shape, dtype=torch.float64, device=HOST)


class Gradients:
    """Mean gradient ``g`` and (for ``element2``) Fisher diagonal of each scored parameter, in host memory."""

    def __init__(self, params: Iterable[nn.Parameter], fisher: bool):
        self.params = list(dict.fromkeys(params))
        self.grad = {p: _host_zeros(p) for p in self.params}
        self.fisher = {p: _host_zeros(p) for p in self.params} if fisher else None
        self.samples = 0

    def fold(self, p: torch.Tensor) -> None:
        """Add ``p``'s gradient (one sample's) to the sums and free it: a post-accumulate-grad hook."""
        g = p.grad.to(HOST).double()
        self.grad[p] += g
        if self.fisher is not None:
            self.fisher[p] += g * g
        p.grad = None

    def mean(self, p: nn.Parameter) -> torch.Tensor:
        return self.grad[p] / self.samples

    def fisher_mean(self, p: nn.Parameter) -> torch.Tensor:
        return self.fisher[p] / self.samples


def sample_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of one window (``[1, seq]``)."""
    logits = model(input_ids=ids, use_cache=False).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half models: the loss in float32
    return F.cross_entropy(logits[0, :-1], ids[0, 1:])


def gradients(model: nn.Module, blocks: torch.Tensor, params: Iterable[nn.Parameter], fisher: bool) -> Gradients:
    """One backward pass per calibration window; every other parameter is frozen meanwhile (restored after)."""
    stats = Gradients(params, fisher)
    wanted = set(stats.params)
    was = {p: p.requires_grad for p in model.parameters()}
    training = model.training
    hooks = []
    model.eval()  # no dropout: the loss the pruned model is judged by
    try:
        for p in model.parameters():
            p.requires_grad_(p in wanted)
            p.grad = None
        hooks += [p.register_post_accumulate_grad_hook(stats.fold) for p in stats.params]
        device = next(model.parameters()).device
        for ids in blocks:
            loss = sample_loss(model, ids[None].to(device))
            loss.backward()
            stats.samples += 1
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in was.items():
            p.requires_grad_(flag)
        model.train(training)
    return stats


def _member_view(t: torch.Tensor, m: Member) -> torch.Tensor:
    """``t`` (shaped like ``m.linear.weight``) as ``[groups, elements per group]``."""
    sel = t.index_select(m.dim, m.index.flatten().to(t.device))
    if m.dim == 0:
        return sel.reshape(m.index.shape[0], -1)
    return sel.T.reshape(m.index.shape[0], -1)


def member_scores(m: Member, stats: Gradients, importance: str) -> torch.Tensor:
    """Importance of each group's part of member ``m`` (``[groups]``, float64), bias entries of rows included."""
    parts = [(m.linear.weight, _member_view)]
    if m.dim == 0 and m.linear.bias is not None:
        parts.append((m.linear.bias, lambda t, mm: t[mm.index.to(t.device)]))
    total = torch.zeros(m.index.shape[0], dtype=torch.float64)
    for param, view in parts:
        w = view(param.detach().to(HOST).double(), m)  # beside the host sums
        g = view(stats.mean(param), m)
        if importance == "vector":
            total += (g * w).sum(1).cpu()  # |·| after the bias entries join the vector
        elif importance == "element1":
            total += (g * w).abs().sum(1).cpu()
        elif importance == "element2":
            h = view(stats.fisher_mean(param), m)
            total += (g * w - 0.5 * h * w * w).abs().sum(1).cpu()
        else:
            raise PruneNetError(f"unknown importance {importance!r}: choose one of {', '.join(IMPORTANCES)}")
    return total.abs() if importance == "vector" else total


def scored_params(members: Iterable[Member]) -> list[nn.Parameter]:
    """The weights (and row biases) whose gradients the members' scores need."""
    out = []
    for m in members:
        out.append(m.linear.weight)
        if m.dim == 0 and m.linear.bias is not None:
            out.append(m.linear.bias)
    return out
