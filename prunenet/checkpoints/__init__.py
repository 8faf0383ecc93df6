"""Checkpoint formats, registered by name in :data:`FORMATS`: each is one module that writes and reads it.

A format module exposes ``NAME``, ``detect(config) -> bool``, ``load(path, config, dtype)`` and
``save(model, tokenizer, out_dir, meta)``. Why a registry here rather than asking the methods: the loader
(:func:`prunenet.models.load_model`) must read every checkpoint without importing any compression method, and
the formats sit below the methods (a method only names the format it writes, :attr:`prunenet.methods.Method.checkpoint`,
by its registry name). :func:`format_for` asks each registered format, in order, whether a ``config.json`` is
its own; plain HF is registered last and owns everything else.

Formats: :mod:`.per_layer_shapes` (FFN widths and KV heads per layer), SliceGPT's
(:mod:`prunenet.slicegpt.checkpoint`, which needs SliceGPT's layer classes and lives beside them),
:mod:`.low_rank` (factored projections) and :mod:`.hf` (plain ``from_pretrained`` checkpoints: the dense model
and uniform FFN slicing). Each checkpoint has a ``prunenet_meta.json`` (:data:`META_FILE`) beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

from ..artifacts import META_FILE
from ..registry import Registry
from ..slicegpt import checkpoint as slicegpt
from . import hf, low_rank, per_layer_shapes

__all__ = ["FORMATS", "META_FILE", "format_for", "read_meta"]

FORMATS: Registry[ModuleType] = Registry("checkpoint format")
for _format in (per_layer_shapes, slicegpt, low_rank, hf):  # detection order: plain HF, which owns any config, last
    FORMATS.register(_format.NAME, _format)


def format_for(config) -> ModuleType:
    """The format module that owns a checkpoint with this config."""
    return next(fmt for _, fmt in FORMATS.items() if fmt.detect(config))


def read_meta(path: str | os.PathLike) -> dict:
    f = Path(path) / META_FILE
    return json.loads(f.read_text()) if f.is_file() else {}
