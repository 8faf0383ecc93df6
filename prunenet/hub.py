"""Is the Hugging Face hub reachable? Asked once, in about a second, before anything reaches for it.

Why: without a route to the hub, ``from_pretrained`` and ``load_dataset`` retry for 40-50 s before failing.
When the hub cannot be reached (or ``HF_HUB_OFFLINE`` is set), models load from the local cache only
(``local_files_only``: a cached model still works) and datasets/tasks that need a download fail at once with
the fix (a local path, ``data_dir``).
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from .errors import PruneNetError

TIMEOUT_S = 1.5


def _offline_env() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in flags)


@functools.cache
def reachable() -> bool:
    """True if a TCP connection to the hub endpoint (``HF_ENDPOINT``, default huggingface.co) opens in time."""
    if _offline_env():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=TIMEOUT_S).close()
        return True
    except OSError:
        return False


def require(what: str, fix: str) -> None:
    """Refuse at once when ``what`` needs a download and the hub is unreachable."""
    if not reachable():
        raise PruneNetError(f"{what} needs the Hugging Face hub, which is not reachable from here: {fix}")


def cached(repo_id: str) -> bool:
    """Whether the local hub cache holds ``repo_id``'s ``config.json`` (what loading it offline needs first)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
