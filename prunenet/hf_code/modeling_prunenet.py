"""Modeling classes of pruned checkpoints, for stock ``transformers`` (``trust_remote_code=True``).

Copied into a checkpoint beside ``configuration_prunenet.py`` (see there for the config keys). Each class is the
family's own ``...ForCausalLM`` with :class:`PrunedMixin` first: the stock constructor builds the dense model from
the config, then the mixin gives the modules the checkpoint's shapes, and ``from_pretrained`` loads the weights
into them as usual (same state-dict names as ``prunenet`` writes). Everything else (attention kernels, rotary
embeddings, KV cache, ``generate``) is the stock family code. Only ``torch`` and ``transformers`` are imported.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    GemmaForCausalLM,
    LlamaForCausalLM,
    MistralForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)

from .configuration_prunenet import (
    FFN_KEY,
    HEADS_KEY,
    LOW_RANK_KEY,
    SLICEGPT_KEY,
    PrunedGemma2Config,
    PrunedGemma3TextConfig,
    PrunedGemmaConfig,
    PrunedLlamaConfig,
    PrunedMistralConfig,
    PrunedQwen2Config,
    PrunedQwen3Config,
)


class LowRankLinear(nn.Module):
    """``x -> u(v(x))``: a projection stored as two factors, ``v`` (rank x in, no bias) then ``u`` (out x rank)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.v = nn.Linear(in_features, rank, bias=False, dtype=dtype)
        self.u = nn.Linear(rank, out_features, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.u(self.v(x))


class RMSN(nn.Module):
    """SliceGPT's scale-free RMSNorm: normalises by the *original* width ``mean_dim`` (no parameters)."""

    def __init__(self, mean_dim: int, eps: float):
        super().__init__()
        self.mean_dim, self.eps = int(mean_dim), float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) / self.mean_dim + self.eps)).to(x.dtype)


class SlicedLayer(nn.Module):
    """SliceGPT's decoder layer: ``h = S_a h + attn(norm(h)); h = S_m h + mlp(norm(h))`` with shortcut matrices.

    The rotated bases before and after each sub-block differ, so each residual goes through a matrix; the
    attention and MLP are the stock modules, resized.
    """

    def __init__(self, layer: nn.Module, dims: list[int], eps: list[float], mean_dim: int):
        super().__init__()
        d_in, d_mid, d_out = dims
        dtype = layer.self_attn.q_proj.weight.dtype
        self.self_attn, self.mlp = layer.self_attn, layer.mlp
        self.input_layernorm, self.post_attention_layernorm = RMSN(mean_dim, eps[0]), RMSN(mean_dim, eps[1])
        self.attn_shortcut = nn.Linear(d_in, d_mid, bias=False, dtype=dtype)
        self.mlp_shortcut = nn.Linear(d_mid, d_out, bias=False, dtype=dtype)

    def forward(self, hidden_states: torch.Tensor, use_cache: bool = False, **kwargs) -> torch.Tensor:
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "attention_mask"}
        out = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
        h = self.attn_shortcut(hidden_states) + (out[0] if isinstance(out, tuple) else out)
        return self.mlp_shortcut(h) + self.mlp(self.post_attention_layernorm(h))


def _reshape(module: nn.Module, shape: tuple[int, int], bias: bool | None = None) -> None:
    """Give a Linear/Embedding fresh parameters of ``shape`` (weights are loaded next); ``bias`` None keeps it."""
    w = module.weight
    module.weight = nn.Parameter(torch.empty(shape, dtype=w.dtype, device=w.device))
    if isinstance(module, nn.Embedding):
        module.embedding_dim = shape[1]
        return
    module.out_features, module.in_features = shape
    if bias if bias is not None else module.bias is not None:
        module.bias = nn.Parameter(torch.empty(shape[0], dtype=w.dtype, device=w.device))
    else:
        module.bias = None


def _resize_ffn(layers: nn.ModuleList, widths: list[int]) -> None:
    for layer, n in zip(layers, widths):
        mlp = layer.mlp
        for lin in (mlp.gate_proj, mlp.up_proj):
            _reshape(lin, (n, lin.in_features))
        _reshape(mlp.down_proj, (mlp.down_proj.out_features, n))


def _resize_heads(layers: nn.ModuleList, kv_heads: list[int]) -> None:
    """Keep ``kv_heads[i]`` whole GQA groups in layer ``i`` (query heads follow; the groups' size is unchanged)."""
    for layer, kv in zip(layers, kv_heads):
        attn = layer.self_attn
        q_rows = kv * attn.num_key_value_groups * attn.head_dim
        _reshape(attn.q_proj, (q_rows, attn.q_proj.in_features))
        for lin in (attn.k_proj, attn.v_proj):
            _reshape(lin, (kv * attn.head_dim, lin.in_features))
        _reshape(attn.o_proj, (attn.o_proj.out_features, q_rows))


def _factor(model: nn.Module, ranks: dict[str, int]) -> None:
    for path, rank in ranks.items():
        old = model.get_submodule(path)
        new = LowRankLinear(old.in_features, old.out_features, int(rank), old.bias is not None, old.weight.dtype)
        model.set_submodule(path, new)


def _slice(model: nn.Module, spec: dict) -> None:
    """SliceGPT's shapes: narrower embeddings and head, per-layer widths and shortcuts, scale-free norms."""
    inner, d = model.model, model.config.hidden_size
    _reshape(inner.embed_tokens, (inner.embed_tokens.num_embeddings, spec["embedding_dim"]))
    layers = []
    for layer, dims, eps in zip(inner.layers, spec["layer_dims"], spec["norm_eps"]):
        d_in, d_mid, d_out = dims
        attn, mlp = layer.self_attn, layer.mlp
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            _reshape(lin, (lin.out_features, d_in), spec.get("qkv_bias"))
        _reshape(attn.o_proj, (d_mid, attn.o_proj.in_features))
        for lin in (mlp.gate_proj, mlp.up_proj):
            _reshape(lin, (lin.out_features, d_mid), spec.get("mlp_in_bias"))
        _reshape(mlp.down_proj, (d_out, mlp.down_proj.in_features))
        layers.append(SlicedLayer(layer, dims, eps, d))
    inner.layers = nn.ModuleList(layers)
    inner.norm = RMSN(d, spec["final_norm_eps"])
    _reshape(model.lm_head, (model.lm_head.out_features, spec["layer_dims"][-1][-1]), spec.get("lm_head_bias"))


class PrunedMixin:
    """Builds the stock dense model, then gives its modules the shapes the config's ``prunenet_*`` keys record."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        layers = self.model.layers
        if getattr(config, SLICEGPT_KEY, None):
            _slice(self, getattr(config, SLICEGPT_KEY))
        if getattr(config, FFN_KEY, None):
            _resize_ffn(layers, list(getattr(config, FFN_KEY)))
        if getattr(config, HEADS_KEY, None):
            _resize_heads(layers, list(getattr(config, HEADS_KEY)))
        if getattr(config, LOW_RANK_KEY, None):
            _factor(self, dict(getattr(config, LOW_RANK_KEY)))


def _pruned(base: type, config_class: type) -> type:
    name = f"Pruned{base.__name__}"
    return type(name, (PrunedMixin, base), {"config_class": config_class, "__doc__": f"{base.__name__}, pruned."})


PrunedLlamaForCausalLM = _pruned(LlamaForCausalLM, PrunedLlamaConfig)
PrunedMistralForCausalLM = _pruned(MistralForCausalLM, PrunedMistralConfig)
PrunedQwen2ForCausalLM = _pruned(Qwen2ForCausalLM, PrunedQwen2Config)
PrunedQwen3ForCausalLM = _pruned(Qwen3ForCausalLM, PrunedQwen3Config)
PrunedGemmaForCausalLM = _pruned(GemmaForCausalLM, PrunedGemmaConfig)
PrunedGemma2ForCausalLM = _pruned(Gemma2ForCausalLM, PrunedGemma2Config)
PrunedGemma3ForCausalLM = _pruned(Gemma3ForCausalLM, PrunedGemma3TextConfig)

MODELS = (
    PrunedLlamaForCausalLM,
    PrunedMistralForCausalLM,
    PrunedQwen2ForCausalLM,
    PrunedQwen3ForCausalLM,
    PrunedGemmaForCausalLM,
    PrunedGemma2ForCausalLM,
    PrunedGemma3ForCausalLM,
)
