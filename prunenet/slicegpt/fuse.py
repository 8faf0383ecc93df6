"""Step 1 of SliceGPT, computational invariance: after it, rotating the residual stream is exact.

A norm's scale (and a LayerNorm's shift) does not commute with a rotation of its input, but it
is a per-channel affine map right before linear layers, so it folds into their input columns
(and biases); what is left is a scale-free RMSNorm, which is rotation invariant. A LayerNorm
also subtracts the mean; making the stream mean-free beforehand (centering every embedding row
and every stream writer) turns it into that RMSNorm. The LM head is untied first because the
embedding and the head are rotated by different matrices afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import ARCHITECTURES, ModelAdapter, get_adapter
from ..errors import PruneNetError
from .layers import RMSN, layer_parts


def slicegpt_model_types() -> list[str]:
    """The registered ``model_type``\\ s SliceGPT can rotate (those whose adapter does not refuse them outright)."""
    return [t for t, cls in ARCHITECTURES.items() if t not in cls.slicegpt_refused]


def slicegpt_adapter(model: nn.Module) -> ModelAdapter:
    """The model's adapter once it has agreed the model can be rotated; else a one-line error."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise PruneNetError(
            f"SliceGPT does not support architecture {model_type!r}: "
            f"supported model_types are {', '.join(slicegpt_model_types())}"
        )
    adapter = get_adapter(model)
    adapter.check_slicegpt()
    return adapter


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Compute dtype for folds and rotations: float64 for float64 tensors, else float32 (exact enough, 2-4x cheaper)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _untie(model: nn.Module, adapter: ModelAdapter) -> bool:
    """Give the LM head its own weight tensor; returns whether it had been tied."""
    head = adapter.lm_head()
    tied = adapter.tied()
    if tied:
        head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return tied


def _fold(adapter: ModelAdapter, norm: nn.Module, readers: list[nn.Linear], d: int) -> RMSN:
    """Move ``norm``'s affine part into ``readers`` (shift first, into the bias; then the scale) -> a bare RMSN."""
    gamma, beta = adapter.norm_affine(norm)
    for lin in readers:
        c = compute_dtype(lin.weight)
        w = lin.weight.to(c)
        if beta is not None:
            shift = w @ beta.to(c)
            if lin.bias is None:
                lin.bias = nn.Parameter(shift.to(lin.weight.dtype))
            else:
                lin.bias.add_(shift.to(lin.bias.dtype))
        if gamma is not None:
            w = w * gamma.to(c)[None, :]
        lin.weight.copy_(w.to(lin.weight.dtype))
    return RMSN(d, adapter.norm_eps(norm))


@torch.no_grad()
def fuse_norms(model: nn.Module) -> nn.Module:
    """Make ``model`` computationally invariant, in place (same function, same HF classes).

    Afterwards every stream norm is a scale-free :class:`RMSN`; LayerNorm models have a
    mean-free residual stream; the LM head is untied. Logits are unchanged (up to
    rounding). Idempotent.
    """
    adapter = slicegpt_adapter(model)
    if getattr(model, "_slicegpt_fused", False):
        return model
    model._slicegpt_untied = _untie(model, adapter)
    d = model.config.hidden_size
    layers = adapter.layers()
    if adapter.layernorm_stream:
        # centre the residual stream: embeddings and every writer
        for emb in adapter.embeddings():
            emb.weight.sub_(emb.weight.mean(-1, keepdim=True))
        for layer in layers:
            p = layer_parts(adapter, layer)
            for w in (p.attn_out, p.mlp_out):
                w.weight.sub_(w.weight.mean(0, keepdim=True))
                if w.bias is not None:
                    w.bias.sub_(w.bias.mean())

    for layer in layers:
        p = layer_parts(adapter, layer)
        if adapter.parallel_block:  # one norm feeds attention and MLP
            norms = [_fold(adapter, p.norms[0], p.attn_in + p.mlp_in, d)]
        else:
            norms = [_fold(adapter, p.norms[0], p.attn_in, d), _fold(adapter, p.norms[1], p.mlp_in, d)]
        adapter.set_norms(layer, norms)
    adapter.set_final_norm(_fold(adapter, adapter.final_norm_module(), [adapter.lm_head()], d))
    model._slicegpt_fused = True
    return model
