"""A name -> class registry shared by the dataset and architecture packages."""

from __future__ import annotations

from typing import Generic, TypeVar

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Classes registered under their ``name`` attribute; unknown names raise a ``ValueError`` listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, C] = {}

    def register(self, cls: C) -> C:
        name = getattr(cls, "name", "")
        if not name:
            raise TypeError(f"{cls.__qualname__} has no registry name")
        if name in self._classes and self._classes[name] is not cls:
            raise TypeError(f"{self.kind} name {name!r} registered twice")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> C:
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._classes[name]
