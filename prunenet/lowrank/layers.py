"""The factored linear layer and where it goes: every projection of every decoder block.

A weight ``W`` (``out × in``) truncated to rank ``k`` is stored as two matrices, ``W ≈ U·V`` with ``V``
(``k × in``) and ``U`` (``out × k``), i.e. two chained :class:`torch.nn.Linear` modules: ``v`` maps the
input to ``k`` channels (no bias), ``u`` maps them to the output and carries the original bias. Being plain
linears, they are what :func:`prunenet.stats.count_params` and :func:`prunenet.stats.flops_per_token`
already count: ``k·(out + in)`` parameters (plus the bias) and ``2·k·(out + in)`` FLOPs per token. The names
follow SVD-LLM's ``W_u`` / ``W_v`` (Wang et al. 2024), which ASVD shares (``U'`` and ``V'``).

Both SVD-LLM and ASVD factor the attention (q, k, v, o) and FFN (up, gate, down) projections of every
decoder block, never the embeddings or the LM head: :func:`decoder_linears` lists them through the
architecture adapter, by module path, in block order.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import skip_init

from ..arch import get_adapter


class LowRankLinear(nn.Module):
    """``x ↦ U (V x) + b``: a rank-``k`` stand-in for an ``nn.Linear`` of the same in/out features."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features, self.rank = int(in_features), int(out_features), int(rank)
        # skip_init: the weights are always overwritten (factors or a checkpoint), so never pay for a random init
        self.v = skip_init(nn.Linear, in_features, rank, bias=False, dtype=dtype, device=device)
        self.u = skip_init(nn.Linear, rank, out_features, bias=bias, dtype=dtype, device=device)

    @classmethod
    def from_factors(cls, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> LowRankLinear:
        """The layer computing ``u @ v @ x + bias`` (``u``: out × k, ``v``: k × in), in ``u``'s dtype and device."""
        out_features, rank = u.shape
        layer = cls(v.shape[1], out_features, rank, bias is not None, dtype=u.dtype, device=u.device)
        with torch.no_grad():
            layer.u.weight.copy_(u)
            layer.v.weight.copy_(v)
            if bias is not None:
                layer.u.bias.copy_(bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.u(self.v(x))

    def dense_weight(self) -> torch.Tensor:
        """``U·V``: the ``out × in`` matrix this layer applies (for tests and inspection)."""
        return self.u.weight @ self.v.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def block_linears(model: nn.Module, layer: nn.Module) -> list[nn.Module]:
    """One decoder block's projections in a fixed order: q, k, v, o, then gate (if any), up, down."""
    adapter = get_adapter(model)
    attn = adapter.attention(layer)
    up, gate, down = adapter.ffn(layer)
    return [attn.q, attn.k, attn.v, attn.o] + ([gate] if gate is not None else []) + [up, down]


def input_groups(model: nn.Module, layer: nn.Module) -> list[list[nn.Module]]:
    """A block's projections grouped by the tensor they read: q/k/v share one input, gate/up another.

    Calibration statistics are collected once per group (hooking the group's first member), so the
    ``in × in`` Gram matrix of a shared input is accumulated once, not three times.
    """
    adapter = get_adapter(model)
    attn = adapter.attention(layer)
    up, gate, down = adapter.ffn(layer)
    return [[attn.q, attn.k, attn.v], [attn.o], ([gate] if gate is not None else []) + [up], [down]]


def decoder_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every projection of every decoder block by module path (relative to ``model``), in block order."""
    names = {id(m): name for name, m in model.named_modules()}
    return {names[id(m)]: m for layer in get_adapter(model).layers() for m in block_linears(model, layer)}


def replace(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at ``path`` (a dotted module path of ``model``)."""
    model.set_submodule(path, module)


def apply_ranks(model: nn.Module, ranks: Mapping[str, int]) -> nn.Module:
    """Give each listed linear an uninitialised :class:`LowRankLinear` of its rank (weights to be loaded).

    The checkpoint loader's structural step: the dense model from the config becomes the factored model
    whose state dict the checkpoint holds.
    """
    for path, rank in ranks.items():
        old = model.get_submodule(path)
        w = old.weight
        new = LowRankLinear(
            old.in_features, old.out_features, int(rank), old.bias is not None, dtype=w.dtype, device=w.device
        )
        replace(model, path, new)
    return model
