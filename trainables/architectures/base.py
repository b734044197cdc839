"""The architecture contract: how a benchmark's encoder blocks and heads become a multi-task model.

An :class:`MTLModel` maps an input to ``{task: prediction}``, and tells which
parameters are shared (what gradient methods balance) and which belong to
one task. Architectures with a single shared representation (``hps``) also
expose ``encode``/``decode`` for representation-space gradient methods
(``supports_rep``); the others refuse that mode.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from torch import Tensor, nn

from ..datasets.base import Benchmark


class MTLModel(nn.Module):
    name: ClassVar[str] = ""
    supports_rep: ClassVar[bool] = False

    def __init__(self, benchmark: Benchmark) -> None:
        super().__init__()
        self.tasks = tuple(benchmark.tasks)

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:  # pragma: no cover - abstract
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        raise ValueError(f"architecture '{self.name}' has no single shared representation (rep mode needs hps)")

    def decode(self, rep: Tensor, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        raise ValueError(f"architecture '{self.name}' has no single shared representation (rep mode needs hps)")


Builder = Callable[..., MTLModel]
_REGISTRY: dict[str, type[MTLModel]] = {}


def register(cls: type[MTLModel]) -> type[MTLModel]:
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} has no registry name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[MTLModel]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[name]


def build(name: str, benchmark: Benchmark, **options: Any) -> MTLModel:
    return get(name)(benchmark, **options)
