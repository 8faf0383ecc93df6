"""Run any registered method on a checkpoint and save the result with what every method reports.

Three steps, each done once per prune: :func:`check` (before any model loads: arguments, the method's needs,
the prepared file read and matched), :func:`apply` (the plumbing every method shares: the budget in,
the calibration record out; the in-memory sweep calls it too) and :func:`compress` (load, apply, measure, save).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import METHODS
from .base import Budget, Method, PruneRequest

if TYPE_CHECKING:
    from torch import nn


def check(name: str, request: PruneRequest, source: str | Path | None = None) -> PruneRequest:
    """Validate a request before any model loads: the method, every layer's ratio, its own needs, and that a
    prepared file (``request.prepared``) was computed from this ``source`` model and request.

    Returns the request to run: a prepared file's path replaced by the file read once (:class:`Prepared`).
    """
    from ..policy import check_ratio
    from .prepared import check_prepared

    method = METHODS.get(name)
    for r in request.ratio.bounds():
        check_ratio(r)
    method.check(request)
    if isinstance(request.prepared, (str, Path)) and source is not None:
        return replace(request, prepared=check_prepared(request.prepared, method, request, source))
    return request


def apply(method: Method, model: nn.Module, tokenizer: Any, request: PruneRequest) -> tuple[nn.Module, dict]:
    """Run ``method`` on the loaded model with what it declares it needs; add the calibration record it drew.

    A sized method gets its :class:`Budget`: PruneNet's parameter count at the ratio, or (``budget: ratio``) the
    ratio alone, which the method reads as its release does (:attr:`Method.nominal`); the latter is recorded.
    """
    if method.budget:
        size = budget(method, model, request)
        model, own = method.run(model, tokenizer, request, size)
        if size.nominal:
            own = own | {"budget": "ratio"}
    else:
        model, own = method.run(model, tokenizer, request)
    if method.needs_calibration:
        own = own | request.calibration_meta()
    return model, own


def budget(method: Method, model: nn.Module, request: PruneRequest) -> Budget:
    """The size ``method`` prunes ``model`` to at the request's ratio (one place decides: here)."""
    ratio = float(request.ratio)
    if request.nominal(method):
        return Budget(ratio)
    from ..budget import ffn_rows_budget

    return Budget(ratio, ffn_rows_budget(model, ratio, request.ffn_multiple))


def compress(
    model_path: str, out: str | Path, name: str, request: PruneRequest, flops_seq_len: int = 2048
) -> tuple[dict, float]:
    """Load ``model_path``, compress it with method ``name``, save to ``out``; return (meta, seconds).

    ``request`` is one :func:`check` returned. ``meta`` (also written as ``prunenet_meta.json``) holds the
    method's own entries plus the mean ratio, seed, source and the size/FLOP statistics against the dense model.
    """
    from ..arch import get_adapter
    from ..models import load_model, save_checkpoint
    from ..stats import model_stats, peak_memory_mb
    from .base import Prepared

    method = METHODS.get(name)
    device = method.load_device(request.device)
    model, tok = load_model(model_path, device=device, dtype=request.weights_dtype())
    dense = model_stats(model, seq_len=flops_seq_len)
    ratios = request.ratio.per_layer(len(get_adapter(model).layers()))
    t0 = time.perf_counter()
    model, own = apply(method, model, tok, request)
    seconds = time.perf_counter() - t0
    if isinstance(request.prepared, Prepared):  # the reused stage's own time counts too (Table 9)
        own["prepare_seconds"] = request.prepared.seconds
        seconds += own["prepare_seconds"]
    stats = model_stats(model, dense["params"], flops_seq_len) | {"dense_flops_per_token": dense["flops_per_token"]}
    meta = {
        "method": name,
        "ratio": round(sum(ratios) / len(ratios), 6),
        "seed": request.seed,
        "stats": stats,
        "source": model_path,
    } | own
    # the method's own wall time (with its prepared stage's), loading and saving excluded
    meta["compress_seconds"] = round(seconds, 6)  # µs: a tiny model's row selection takes well under 1 ms
    meta["peak_memory_mb"] = round(peak_memory_mb(request.device), 1)  # loading included (Table 9)
    save_checkpoint(model, tok, out, meta)
    return meta, seconds
