"""The architecture contract: how a benchmark's encoder blocks and heads become a multi-task model.

An :class:`MTLModel` maps an input to ``{task: prediction}``, and tells which
parameters are shared (what gradient methods balance) and which belong to
one task. Architectures with a single shared representation (``hps``) also
expose ``encode``/``decode`` for representation-space gradient methods
(``supports_rep``); the others refuse that mode.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from litmus.errors import ConfigError

from ..datasets.base import Benchmark
from ..registry import Registry


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
        raise ConfigError(f"architecture '{self.name}' has no single shared representation (rep mode needs hps)")

    def decode(self, rep: Tensor, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        raise ConfigError(f"architecture '{self.name}' has no single shared representation (rep mode needs hps)")


_REGISTRY: Registry[type[MTLModel]] = Registry("architecture", MTLModel)
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get
origin = _REGISTRY.origin


def build(name: str, benchmark: Benchmark, **options: Any) -> MTLModel:
    return get(name)(benchmark, **options)
