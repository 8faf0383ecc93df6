"""Checkpoints whose decoder layers have different shapes: FFN widths (per-layer ratios, paper T7) and, after
LLM-Pruner's head pruning, attention KV-group counts.

Written as a plain HF checkpoint whose ``config.json`` lists the widths under ``prunenet_intermediate_sizes``
(the standard size key holds the largest) and the key/value heads kept per layer under ``prunenet_kv_heads``
(query heads follow: whole GQA groups are removed; the standard head keys keep the dense counts, so
``head_dim`` is unchanged); read by building the model from its config, resizing each layer, then loading the
weights. Plain ``from_pretrained`` cannot express this, so load it with :func:`prunenet.models.load_model`.
A uniform width and full attention write no key: the checkpoint stays a plain HF one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..arch import get_adapter
from ..surgery import empty_like_linear, slice_attention
from . import hf

NAME = "per-layer-shapes"
# The config keys below are written into every checkpoint's config.json: they keep their names (from when this
# format stored FFN widths only) so that existing checkpoints load and new ones stay byte-identical.
KEY = "prunenet_intermediate_sizes"
HEADS_KEY = "prunenet_kv_heads"


def detect(config) -> bool:
    return bool(getattr(config, KEY, None)) or bool(getattr(config, HEADS_KEY, None))


def mark(model: nn.Module, sizes: list[int]) -> None:
    """Record the FFN widths in the config: the standard key if uniform, else the per-layer list."""
    adapter = get_adapter(model)
    if len(set(sizes)) == 1:
        adapter.set_intermediate_size(sizes[0])
        if hasattr(model.config, KEY):
            delattr(model.config, KEY)
    else:
        adapter.set_intermediate_size(max(sizes))
        setattr(model.config, KEY, list(sizes))


def mark_heads(model: nn.Module, kv_heads: list[int]) -> None:
    """Record each layer's key/value head count (nothing if every layer kept all of its heads)."""
    dense = getattr(model.config, "num_key_value_heads", None) or model.config.num_attention_heads
    if all(h == dense for h in kv_heads):
        if hasattr(model.config, HEADS_KEY):
            delattr(model.config, HEADS_KEY)
        return
    setattr(model.config, HEADS_KEY, list(kv_heads))


def sizes(config) -> list[int] | None:
    return list(getattr(config, KEY, None) or []) or None


def resize_ffn(model: nn.Module, widths: list[int]) -> None:
    """Give each decoder layer's FFN the intermediate size ``widths[i]`` (fresh, uninitialised weights)."""
    adapter = get_adapter(model)
    for layer, n in zip(adapter.layers(), widths):
        up, gate, down = adapter.ffn(layer)
        adapter.set_ffn(
            layer,
            empty_like_linear(up, up.in_features, n),
            empty_like_linear(gate, gate.in_features, n) if gate is not None else None,
            empty_like_linear(down, n, down.out_features),
        )


def resize_attention(model: nn.Module, kv_heads: list[int]) -> None:
    """Give each decoder layer's attention ``kv_heads[i]`` KV groups (shapes only; the weights are loaded next)."""
    for layer, n in zip(get_adapter(model).layers(), kv_heads):
        slice_attention(model, layer, torch.arange(n))


def load(path: Path, config, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if sizes(config):
        resize_ffn(model, sizes(config))
    if getattr(config, HEADS_KEY, None):
        resize_attention(model, list(getattr(config, HEADS_KEY)))
    return hf.load_weights(model, path, config, dtype)


save = hf.save
