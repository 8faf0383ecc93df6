"""Plain Hugging Face checkpoints (safetensors + config + tokenizer + ``prunenet_meta.json``).

The dense model and every uniformly sliced model are in this format: plain
``AutoModelForCausalLM.from_pretrained`` loads them. The fallback of format detection.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .. import hf_code
from ..artifacts import META_FILE, atomic_dir, write_json

NAME = "hf"


def detect(config) -> bool:
    return True


def load(path: Path, config, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def load_weights(model: nn.Module, path: str | os.PathLike, config, dtype: torch.dtype) -> nn.Module:
    """Load a checkpoint's safetensors into ``model``, already built from ``config`` with the checkpoint's shapes.

    Formats whose modules ``from_pretrained`` cannot build (per-layer FFN widths, factored projections) reshape
    a fresh model first and then read the weights here: strictly (a tied LM head is stored once, as HF does),
    one line naming the checkpoint when they do not match.
    """
    from safetensors.torch import load_file

    from ..errors import PruneNetError

    state = {}
    for shard in sorted(Path(path).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        raise PruneNetError(f"checkpoint {path} has no safetensors weights: delete it and rerun")
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise PruneNetError(
            f"checkpoint {path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.tie_weights()
    return model


def save(model: nn.Module, tokenizer, out_dir: str | os.PathLike, meta: dict | None = None) -> Path:
    """Save atomically (temp dir, then rename), with a ``prunenet_meta.json`` beside the weights.

    Shapes no stock class expresses (per-layer widths, factors) get the code that loads them with stock
    transformers (:func:`prunenet.hf_code.attach`); a plain checkpoint is written as before.
    """
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        hf_code.attach(tmp)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / META_FILE, meta or {})
    return out
