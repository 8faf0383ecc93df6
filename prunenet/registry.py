"""A small name -> object registry (after lm-eval's ``api/registry.py``).

Architectures, compression methods and checkpoint formats each keep one registry, so the
CLI choices, the config schema and the workflow read one list instead of repeating it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import PruneNetError

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered ``name -> entry`` map whose lookups fail with one line listing the known names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, *names: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("a", "b")`` registers the decorated object under each name."""

        def wrap(entry: T) -> T:
            for name in names:
                self.register(name, entry)
            return entry

        return wrap

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise PruneNetError(f"unknown {self.kind} {name!r}: known are {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
