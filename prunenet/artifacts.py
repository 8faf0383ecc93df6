"""Atomic writes: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import PruneNetError

# The metadata file beside every checkpoint (what wrote it, its sizes): here, below every checkpoint format, so
# that each format (:mod:`prunenet.checkpoints`, SliceGPT's) writes it without importing the format registry.
META_FILE = "prunenet_meta.json"
# The same metadata inside a GGUF export (a string key), so a llama.cpp measurement names its checkpoint
GGUF_META_KEY = "prunenet.meta"


def _clear_stale(parent: Path, pattern: str) -> None:
    """Remove what a killed writer of the same output left (``kill -9`` skips every ``finally``): one output has
    one writer at a time (Snakemake's rule), so a temp sibling named after it is always stale."""
    for stale in parent.glob(pattern):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(final.parent, f".{glob.escape(final.name)}.tmp-*")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``final`` (same suffix); rename it into place only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(final.parent, f".{glob.escape(final.stem)}.tmp-*{glob.escape(final.suffix)}")
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.tmp-", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse, before any work, an output the command could not write: under a kernel filesystem, below a
    regular file, or in a directory this user cannot write to (a read-only mount included)."""
    target = Path(path).absolute()
    for root in (Path("/proc"), Path("/sys"), Path("/dev")):
        if target == root or root in target.parents:
            raise PruneNetError(f"{flag} {path} is under {root}: choose a path on a normal filesystem")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PruneNetError(f"{flag} {path}: {parent} is a file, not a directory: choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PruneNetError(f"{flag} {path}: {parent} is not writable (read-only or no permission): choose another")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
