"""Compression methods, one module each, registered by name in :data:`METHODS`.

A new method is one module here that calls ``register(Method(name=...))`` (the name written once) and is
imported below; the CLI (``prunenet prune --method NAME``), the config schema's enum (tested
equal) and the workflow's rules pick it up from the registry. Registration order is the order
of rows in the reports.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Method, Option, PruneRequest

METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` under its own name; returns it (a module keeps it to read its options)."""
    return METHODS.register(method.name, method)


from . import prunenet, slicegpt, deterministic, random_rows, shortgpt  # noqa: E402,F401,I001  (register; order = report order)
from . import laco  # noqa: E402,F401,I001
from . import svd_llm, asvd  # noqa: E402,F401,I001
from . import llm_pruner, llm_surgeon  # noqa: E402,F401,I001
from . import prunenet_attention  # noqa: E402,F401,I001
from .pipeline import compress  # noqa: E402

__all__ = ["METHODS", "Method", "Option", "PruneRequest", "compress", "register"]
