"""A method's ratio-independent state on disk: what ``prunenet prepare`` writes and ``prune --prepared`` reads.

Why: some methods spend most of their time on work the ratio does not change (ASVD's activation scales and
sensitivity search, ShortGPT's Block Influence), and the workflow prunes every model at several ratios. The
file is plain safetensors; its metadata (:data:`KEY`) records what the state was computed from: method,
source model, seed, calibration and the method's options. ``prune`` refuses a file whose record differs from
its own request (:func:`check_prepared`, before any model loads), so a reused state always
equals the one ``run`` would have computed, and the pruned checkpoint is byte-identical either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PruneNetError
from .base import Method, Prepared, PruneRequest

if TYPE_CHECKING:
    import torch

KEY = "prunenet_prepared"
SECONDS = "prunenet_prepare_seconds"


def fingerprint(method: Method, request: PruneRequest, source: str | Path) -> dict[str, Any]:
    """What a prepared state depends on: everything of the request except the ratio, what the ratio means (the
    ``budget`` option) and the state itself."""
    record: dict[str, Any] = {
        "method": method.name,
        "source": str(Path(source).resolve()),
        "seed": request.seed,
        "options": method.own_options(request),
    }
    dtype = str(request.weights_dtype()).removeprefix("torch.")
    if dtype != "float32":  # a state computed on bfloat16 weights is another state (float32 records stay as they were)
        record["dtype"] = dtype
    if method.needs_calibration:
        data = str(Path(request.data_dir).resolve()) if request.data_dir else None  # None: the hub
        record |= request.calibration_meta() | {"data_dir": data}
    return record


def save_prepared(
    path: str | Path, tensors: Mapping[str, torch.Tensor], record: dict[str, Any], seconds: float
) -> None:
    """Write ``tensors`` with ``record`` and the stage's wall ``seconds`` atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    from ..artifacts import atomic_file

    metadata = {KEY: json.dumps(record), SECONDS: repr(float(seconds))}
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_prepared(path: str | Path) -> Prepared:
    """The whole prepared file (tensors on CPU); one-line errors for a missing or foreign file."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise PruneNetError(f"--prepared {path}: no such file (write it with `prunenet prepare`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if KEY in meta else {}
    except Exception as err:  # safetensors raises its own error types for a non-safetensors file
        raise PruneNetError(f"--prepared {path}: not a safetensors file ({err})") from None
    if KEY not in meta:
        raise PruneNetError(f"--prepared {path}: not written by `prunenet prepare`")
    return Prepared(str(path), json.loads(meta[KEY]), float(meta.get(SECONDS, "nan")), tensors)


def check_prepared(path: str | Path, method: Method, request: PruneRequest, source: str | Path) -> Prepared:
    """The prepared file, refused if computed from anything other than what this request would compute it from."""
    prepared = read_prepared(path)
    have, want = prepared.record, fingerprint(method, request, source)
    diff = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    if diff:
        shown = ", ".join(f"{k}: file {have.get(k)!r} vs request {want.get(k)!r}" for k in diff)
        raise PruneNetError(f"--prepared {path} was computed for another request ({shown}): rerun `prunenet prepare`")
    return prepared
