"""In-place shape surgery on HF modules: the one place that cuts or reshapes linears and attention.

Why one module at the bottom of the package: FFN slicing (:mod:`prunenet.slicing`), the structured methods'
dependency groups (:mod:`prunenet.structured.groups`), attention-policy pruning, SliceGPT and the checkpoint
formats that rebuild pruned shapes before loading weights (:mod:`prunenet.checkpoints`) all resize the same
modules. Keeping the surgery here lets every one of them import it downward, so that no algorithm module has
to import another (or a checkpoint format an algorithm) just to reuse a helper. Only :mod:`prunenet.arch`
and :mod:`prunenet.errors`-level modules sit below it.
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import get_adapter


def slice_linear(linear: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    """A new linear keeping rows (``dim`` 0, with their bias entries) or columns (``dim`` 1) ``idx`` of ``linear``."""
    weight = linear.weight.index_select(dim, idx.to(linear.weight.device)).clone()
    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        bias = linear.bias if dim == 1 else linear.bias.index_select(0, idx.to(linear.bias.device))
        new.bias.data.copy_(bias)
    return new


def empty_like_linear(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """A new linear of the given shape with ``old``'s bias flag and dtype (weights to be loaded)."""
    return nn.Linear(in_features, out_features, bias=old.bias is not None, dtype=old.weight.dtype)


def set_weight(mod: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None, keep_bias: bool = True) -> None:
    """Replace a Linear/Embedding's parameters (shapes may change) and its size attributes."""
    mod.weight = nn.Parameter(weight.contiguous(), requires_grad=mod.weight.requires_grad)
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = weight.shape
        if bias is not None:
            mod.bias = nn.Parameter(bias.contiguous())
        elif not keep_bias:
            mod.bias = None
    else:  # embedding
        mod.num_embeddings, mod.embedding_dim = weight.shape


def blocks(groups: int, width: int) -> torch.Tensor:
    """``[groups, width]`` consecutive indices: group ``g`` owns ``g·width … (g+1)·width − 1``."""
    return torch.arange(groups * width).view(groups, width)


@torch.no_grad()
def slice_attention(model: nn.Module, layer: nn.Module, keep: torch.Tensor) -> int:
    """Keep only the KV groups ``keep`` of ``layer``'s attention (q/k/v rows, o columns); returns the KV heads left.

    The module's head counts follow where it stores them (OPT's ``num_heads``); LLaMA-family attention reads
    the head count from its projections' shapes, and ``num_key_value_groups`` is unchanged (whole groups go).
    """
    adapter = get_adapter(model)
    a = adapter.attention(layer)
    keep = torch.as_tensor(keep, dtype=torch.long)
    q_rows = blocks(a.num_kv_heads, a.group_size * a.head_dim)[keep].flatten()
    kv_rows = blocks(a.num_kv_heads, a.head_dim)[keep].flatten()
    attn = layer.get_submodule(adapter.attn)
    names = [*adapter.qkv_names, adapter.o_name]
    for name, lin, rows, dim in zip(names, (a.q, a.k, a.v, a.o), (q_rows, kv_rows, kv_rows, q_rows), (0, 0, 0, 1)):
        setattr(attn, name, slice_linear(lin, rows, dim))
    heads = int(keep.numel()) * a.group_size
    for attr, value in (("num_heads", heads), ("num_key_value_heads", int(keep.numel()))):
        if hasattr(attn, attr):
            setattr(attn, attr, value)
    return int(keep.numel())
