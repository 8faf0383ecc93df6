"""The modules a sliced model is made of, and the weight surgery that resizes HF linears.

A sliced decoder layer cannot stay an HF layer: SliceGPT adds a ``d' x d'`` shortcut matrix on
every residual connection (the rotated bases before and after a sub-block differ), which no HF
layer has. :class:`SlicedSequentialLayer` / :class:`SlicedParallelLayer` wrap the layer's own
attention and MLP modules (so rotary embeddings, grouped-query attention and the KV cache keep
working) around scale-free :class:`RMSN` norms and those shortcuts. Which attention/MLP/norms a
layer has, and which of their linears read or write the stream, comes from the architecture
adapter (:mod:`prunenet.arch`); nothing here names a module path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..arch import ModelAdapter


class RMSN(nn.Module):
    """Scale-free RMSNorm whose mean runs over the *original* width ``mean_dim``.

    ``x * rsqrt(sum(x^2) / mean_dim + eps)``: invariant to rotations of ``x``, and after
    deleting low-variance directions it still normalizes by the original width, as the
    unsliced norm did. No parameters.
    """

    def __init__(self, mean_dim: int, eps: float):
        super().__init__()
        self.mean_dim = int(mean_dim)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        var = xf.pow(2).sum(-1, keepdim=True) / self.mean_dim
        return (xf * torch.rsqrt(var + self.eps)).to(dtype)

    def extra_repr(self) -> str:
        return f"mean_dim={self.mean_dim}, eps={self.eps}"


def _attn_kwargs(kw: dict) -> dict:
    """Keyword arguments for the wrapped HF attention: drop Nones, but always pass the mask."""
    out = {k: v for k, v in kw.items() if v is not None}
    out["attention_mask"] = kw.get("attention_mask")
    return out


class SlicedSequentialLayer(nn.Module):
    """Pre-norm block ``h = S_a h + attn(norm(h)); h = S_m h + mlp(norm(h))`` (LLaMA, OPT).

    ``attn_shortcut``/``mlp_shortcut`` are the SliceGPT residual matrices (``nn.Linear``,
    no bias) mapping between the rotated, sliced bases before and after each sub-block.
    """

    def __init__(
        self,
        self_attn: nn.Module,
        mlp: nn.Module,
        input_norm: nn.Module,
        post_attention_norm: nn.Module,
        attn_shortcut: nn.Linear,
        mlp_shortcut: nn.Linear,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.input_layernorm = input_norm
        self.post_attention_layernorm = post_attention_norm
        self.attn_shortcut = attn_shortcut
        self.mlp_shortcut = mlp_shortcut
        self.attn_dropout = attn_dropout

    def attn_part(self, hidden_states: torch.Tensor, **kw) -> torch.Tensor:
        out = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **_attn_kwargs(kw))
        out = out[0] if isinstance(out, tuple) else out
        out = nn.functional.dropout(out, p=self.attn_dropout, training=self.training)
        return self.attn_shortcut(hidden_states) + out

    def mlp_part(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.mlp_shortcut(hidden_states) + self.mlp(self.post_attention_layernorm(hidden_states))

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=False,
        position_embeddings=None,
        **kwargs,
    ) -> torch.Tensor:
        h = self.attn_part(
            hidden_states,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        return self.mlp_part(h)


class SlicedParallelLayer(nn.Module):
    """Phi-2 parallel block ``h = S h + attn(norm(h)) + mlp(norm(h))`` with one shortcut."""

    def __init__(
        self,
        self_attn: nn.Module,
        mlp: nn.Module,
        input_norm: nn.Module,
        shortcut: nn.Linear,
        resid_dropout: float = 0.0,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.input_layernorm = input_norm
        self.shortcut = shortcut
        self.resid_dropout = resid_dropout

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=False,
        position_embeddings=None,
        **kwargs,
    ) -> torch.Tensor:
        x = self.input_layernorm(hidden_states)
        out = self.self_attn(
            hidden_states=x,
            **_attn_kwargs(
                dict(
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    past_key_values=past_key_values,
                    position_embeddings=position_embeddings,
                    **kwargs,
                )
            ),
        )
        out = out[0] if isinstance(out, tuple) else out
        drop = lambda t: nn.functional.dropout(t, p=self.resid_dropout, training=self.training)  # noqa: E731
        return self.shortcut(hidden_states) + drop(out) + drop(self.mlp(x))


@dataclass
class LayerParts:
    """The stream's view of one decoder layer (HF or sliced): its norms, readers and writers."""

    norms: list[nn.Module]
    attn_in: list[nn.Linear]
    attn_out: nn.Linear
    mlp_in: list[nn.Linear]
    mlp_out: nn.Linear


def layer_parts(adapter: ModelAdapter, layer: nn.Module) -> LayerParts:
    """Norms, stream readers and writers of an HF decoder layer (via the adapter) or of a sliced one.

    A sliced layer keeps the HF attention and MLP modules, so the adapter still names their
    projections; its norms are its own attributes.
    """
    if isinstance(layer, SlicedSequentialLayer):
        attn, mlp, norms = layer.self_attn, layer.mlp, [layer.input_layernorm, layer.post_attention_layernorm]
    elif isinstance(layer, SlicedParallelLayer):
        attn, mlp, norms = layer.self_attn, layer.mlp, [layer.input_layernorm]
    else:
        block = adapter.block(layer)
        attn, mlp, norms = block.attn, block.mlp, block.norms
    return LayerParts(norms, adapter.attn_in(attn), adapter.attn_out(attn), adapter.mlp_in(mlp), adapter.mlp_out(mlp))


def to_sliced_layer(adapter: ModelAdapter, layer: nn.Module, d_in: int, d_mid: int, d_out: int) -> nn.Module:
    """Wrap a fused HF layer into a sliced-layer module with placeholder shortcuts (``d_in -> d_mid -> d_out``).

    The shortcuts are created here (in this order) and overwritten by rotation or by a checkpoint.
    """
    block = adapter.block(layer)
    dtype = adapter.attn_in(block.attn)[0].weight.dtype
    if block.parallel:
        return SlicedParallelLayer(
            block.attn, block.mlp, block.norms[0], nn.Linear(d_in, d_out, bias=False, dtype=dtype), block.dropout
        )
    return SlicedSequentialLayer(
        block.attn,
        block.mlp,
        block.norms[0],
        block.norms[1],
        nn.Linear(d_in, d_mid, bias=False, dtype=dtype),
        nn.Linear(d_mid, d_out, bias=False, dtype=dtype),
        block.dropout,
    )
