"""Checkpoint formats: each is one module that writes and reads it.

A format module exposes ``NAME``, ``detect(config) -> bool``, ``load(path, config, dtype)``
and ``save(model, tokenizer, out_dir, meta)``. Every compression method names the module of
the format it writes (:attr:`prunenet.methods.Method.checkpoint`), so the loader knows every
format without importing any method's code up front: :func:`format_for` asks each registered
method's format whether a ``config.json`` is its own, and falls back to a plain HF checkpoint.

Formats here: :mod:`.hf` (plain ``from_pretrained`` checkpoints: the dense model and uniform
FFN slicing), :mod:`.per_layer_ffn` (different FFN widths per layer), and SliceGPT's
(:mod:`prunenet.slicegpt.checkpoint`). Each checkpoint has a ``prunenet_meta.json`` beside it.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

from . import hf

META_FILE = "prunenet_meta.json"


def format_modules() -> list[ModuleType]:
    """The format module of every registered method (each once, in registry order), then plain HF."""
    from ..methods import METHODS

    names = dict.fromkeys(method.checkpoint for _, method in METHODS.items())
    modules = [importlib.import_module(name) for name in names]
    return [m for m in modules if m is not hf] + [hf]


def format_for(config) -> ModuleType:
    """The format module that owns a checkpoint with this config."""
    return next(fmt for fmt in format_modules() if fmt.detect(config))


def read_meta(path: str | os.PathLike) -> dict:
    f = Path(path) / META_FILE
    return json.loads(f.read_text()) if f.is_file() else {}
