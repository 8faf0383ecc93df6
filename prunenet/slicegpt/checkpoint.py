"""The SliceGPT checkpoint format: an HF ``config.json`` with a ``prunenet_slicegpt`` entry, plus safetensors.

A sliced model has no HF class (its layers carry shortcut matrices and every width changed),
so ``from_pretrained`` cannot read it. The config entry (the *marker*, written by
:func:`prunenet.slicegpt.slice_model`) records every width; :func:`build_sliced_structure`
turns a fresh dense model from the same config into an uninitialised sliced one of exactly
those shapes, and the weights are then loaded into it. Checkpoints written before the
package split carry the same marker and load unchanged.

Format-module interface (see :mod:`prunenet.checkpoints`): :data:`NAME`, :func:`detect`,
:func:`load`, :func:`save`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .. import hf_code
from ..artifacts import META_FILE, atomic_dir, write_json
from ..errors import PruneNetError
from ..surgery import set_weight
from .fuse import fuse_norms, slicegpt_adapter
from .layers import layer_parts, to_sliced_layer

NAME = "slicegpt"
MARKER = "prunenet_slicegpt"
WEIGHTS_FILE = "model.safetensors"


def is_sliced_config(config) -> bool:
    """True for a config written by :func:`save_sliced`."""
    return bool(getattr(config, MARKER, None))


def save_sliced(model: nn.Module, tokenizer, out_dir: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write a sliced checkpoint atomically: config.json (with the marker), safetensors, tokenizer, meta."""
    from safetensors.torch import save_file

    if not is_sliced_config(model.config):
        raise PruneNetError("save_sliced needs a model produced by slice_model")
    out = Path(out_dir)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_dir(out) as tmp:
        model.config.save_pretrained(str(tmp))
        hf_code.attach(tmp)  # LLaMA-family sliced models load with stock transformers (trust_remote_code)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        write_json(tmp / META_FILE, meta or {})
    return out


def _resize(mod: nn.Module, shape: tuple[int, ...], bias: bool | None = None) -> None:
    """Give a Linear/Embedding uninitialised parameters of ``shape``; ``bias`` None keeps its bias or not."""
    w = mod.weight
    set_weight(mod, torch.empty(shape, dtype=w.dtype, device=w.device))
    if isinstance(mod, nn.Linear):
        want = (mod.bias is not None) if bias is None else bool(bias)
        mod.bias = nn.Parameter(torch.empty(shape[0], dtype=w.dtype, device=w.device)) if want else None


def build_sliced_structure(model: nn.Module, spec: dict) -> nn.Module:
    """Turn a fresh dense HF model into an (uninitialised) sliced model described by ``spec``."""
    adapter = slicegpt_adapter(model)
    if spec.get("family") != adapter.family:
        raise PruneNetError(f"sliced checkpoint is for {spec.get('family')!r} but the config builds {adapter.family!r}")
    fuse_norms(model)  # replaces norms by RMSN, unties; weights are overwritten by the checkpoint anyway
    kept = spec["embedding_dim"]
    for emb in adapter.embeddings():
        _resize(emb, (emb.weight.shape[0], kept))
    new = []
    for i, (layer, dims) in enumerate(zip(adapter.layers(), spec["layer_dims"])):
        d_in, d_out = dims[0], dims[-1]
        d_mid = d_out if adapter.parallel_block else dims[1]
        sl = to_sliced_layer(adapter, layer, d_in, d_mid, d_out)
        p = layer_parts(adapter, sl)
        for lin in p.attn_in:
            _resize(lin, (lin.out_features, d_in), spec.get("qkv_bias"))
        _resize(p.attn_out, (d_mid, p.attn_out.in_features))
        for lin in p.mlp_in:  # a parallel block's MLP reads the block input, a sequential one the mid stream
            _resize(lin, (lin.out_features, d_in if adapter.parallel_block else d_mid), spec.get("mlp_in_bias"))
        _resize(p.mlp_out, (d_out, p.mlp_out.in_features))
        for norm, eps in zip(p.norms, spec["norm_eps"][i]):
            norm.eps = eps
        new.append(sl)
    adapter.set_layers(new)
    adapter.final_norm_module().eps = spec["final_norm_eps"]
    head = adapter.lm_head()
    _resize(head, (head.out_features, spec["layer_dims"][-1][-1]), spec.get("lm_head_bias"))
    setattr(model.config, MARKER, spec)
    return model


def load_sliced(path: str | os.PathLike, config, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild a sliced model from ``config`` (with the marker) and load ``path``'s weights."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = Path(path)
    spec = getattr(config, MARKER, None)
    if not spec:
        raise PruneNetError(f"{path} is not a SliceGPT checkpoint (no {MARKER} in config.json)")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise PruneNetError(f"SliceGPT checkpoint {path} has no safetensors weights: delete it and rerun slicing")
    config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    build_sliced_structure(model, spec)
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise PruneNetError(
            f"SliceGPT checkpoint {path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval()


# ----------------------------------------------------------------- format-module interface

detect = is_sliced_config
load = load_sliced
save = save_sliced
