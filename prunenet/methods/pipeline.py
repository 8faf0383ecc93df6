"""Run any registered method on a checkpoint and save the result with what every method reports."""

from __future__ import annotations

import time
from pathlib import Path

from . import METHODS
from .base import PruneRequest


def check(name: str, request: PruneRequest, source: str | Path | None = None) -> None:
    """Validate a request before any model loads: the method, every layer's ratio, its own needs, and that a
    prepared file (``request.prepared``) was computed from this ``source`` model and request."""
    from ..policy import check_ratio
    from ..slicing import layer_ratios
    from .prepared import check_prepared

    method = METHODS.get(name)
    probe_layers = len(request.ratio) if isinstance(request.ratio, list) else 2
    for r in layer_ratios(request.ratio, probe_layers):
        check_ratio(r)
    method.check(request)
    if isinstance(request.prepared, (str, Path)) and source is not None:
        check_prepared(request.prepared, method, request, source)


def compress(
    model_path: str, out: str | Path, name: str, request: PruneRequest, flops_seq_len: int = 2048
) -> tuple[dict, float]:
    """Load ``model_path``, compress it with method ``name``, save to ``out``; return (meta, seconds).

    ``meta`` (also written as ``prunenet_meta.json``) holds the method's own entries plus the mean
    ratio, seed, source and the size/FLOP statistics against the dense model.
    """
    from ..arch import get_adapter
    from ..models import load_model, save_checkpoint
    from ..slicing import layer_ratios
    from ..stats import model_stats, peak_memory_mb

    check(name, request, model_path)
    method = METHODS.get(name)
    model, tok = load_model(model_path, device="cpu" if method.offload else request.device, dtype="float32")
    dense = model_stats(model, seq_len=flops_seq_len)
    ratios = layer_ratios(request.ratio, len(get_adapter(model).layers()))
    t0 = time.perf_counter()
    model, own = method.run(model, tok, request)
    seconds = time.perf_counter() - t0
    if isinstance(request.prepared, (str, Path)):  # the reused stage's own time counts too (Table 9)
        from .prepared import read_seconds

        own["prepare_seconds"] = read_seconds(request.prepared)
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
