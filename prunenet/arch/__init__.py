"""Architecture adapters, registered by ``config.model_type``.

A new family is one file here with a :class:`~prunenet.arch.base.ModelAdapter` subclass
decorated with ``@ARCHITECTURES.decorator("<model_type>", ...)``, imported at the bottom.
"""

from __future__ import annotations

from torch import nn

from ..errors import PruneNetError
from ..registry import Registry

ARCHITECTURES: Registry[type] = Registry("architecture")


def supported_model_types() -> list[str]:
    return sorted(ARCHITECTURES.names())


def get_adapter(model: nn.Module):
    """The adapter bound to ``model``, or a one-line error listing the supported architectures."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise PruneNetError(
            f"unsupported architecture {model_type!r}: supported model_types are {', '.join(supported_model_types())}"
        )
    return ARCHITECTURES.get(model_type)(model)


from . import llama, opt, phi  # noqa: E402,F401  (register the families)
from .base import STATES, AttentionLayout, Block, ModelAdapter  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "STATES",
    "AttentionLayout",
    "Block",
    "ModelAdapter",
    "get_adapter",
    "supported_model_types",
]
