"""Plain Hugging Face checkpoints (safetensors + config + tokenizer + ``prunenet_meta.json``).

The dense model and every uniformly sliced model are in this format: plain
``AutoModelForCausalLM.from_pretrained`` loads them. The fallback of format detection.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..artifacts import atomic_dir, write_json

NAME = "hf"


def detect(config) -> bool:
    return True


def load(path: Path, config, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def save(model: nn.Module, tokenizer, out_dir: str | os.PathLike, meta: dict | None = None) -> Path:
    """Save atomically (temp dir, then rename), with a ``prunenet_meta.json`` beside the weights."""
    from . import META_FILE

    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / META_FILE, meta or {})
    return out
