"""Checkpoints whose decoder projections are low-rank factorisations (SVD-LLM, ASVD).

Format: a plain HF checkpoint directory (``config.json``, safetensors, tokenizer, ``prunenet_meta.json``)
whose ``config.json`` carries ``prunenet_low_rank``: a mapping from the module path of every factored
linear (relative to the causal-LM model, e.g. ``model.layers.3.self_attn.q_proj``) to its rank ``k``.
Each such linear is a :class:`prunenet.lowrank.layers.LowRankLinear`, so its weights are stored as

    <path>.v.weight   k × in     (no bias)
    <path>.u.weight   out × k
    <path>.u.bias     out        (only where the original linear had a bias)

and ``W ≈ u.weight @ v.weight``. Every other tensor is the dense model's, under its usual name; a tied
LM head is stored once, as HF does. Projections not listed (kept dense) are ordinary ``nn.Linear``.

Plain ``from_pretrained`` cannot express the factored modules, so load through
:func:`prunenet.models.load_model`: :func:`load` builds the dense model from the config, swaps each listed
linear for an uninitialised factored one of its rank, loads the weights (strict, except the tied head)
and re-ties the head. A model with nothing factored writes no key and stays a plain HF checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import hf

NAME = "low-rank"
KEY = "prunenet_low_rank"


def detect(config) -> bool:
    return bool(getattr(config, KEY, None))


def ranks(config) -> dict[str, int]:
    """The factored linears of a checkpoint's config, path -> rank (empty for a dense model)."""
    return {str(p): int(k) for p, k in (getattr(config, KEY, None) or {}).items()}


def mark(model: nn.Module, factored: Mapping[str, int]) -> None:
    """Record the factored linears in the model's config (what :func:`load` needs to rebuild them)."""
    if factored:
        setattr(model.config, KEY, {str(p): int(k) for p, k in factored.items()})
    elif hasattr(model.config, KEY):
        delattr(model.config, KEY)


def load(path: Path, config, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    from ..lowrank.layers import apply_ranks

    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    apply_ranks(model, ranks(config))
    return hf.load_weights(model, path, config, dtype)


save = hf.save
