"""The dataset contract: data, encoder and heads, losses, metrics with direction.

A benchmark is a :class:`Benchmark` subclass registered with
:func:`register`. The trainer and the architectures only use this contract,
so a new dataset needs no change elsewhere.

Data come as :class:`Splits`: for single-input datasets each split is a
:class:`TensorSplit` (in-memory tensors, batched without a DataLoader) or any
``torch.utils.data.Dataset`` returning ``(input, {task: target})``; for
multi-input datasets (``multi_input = True``: each task has its own inputs,
e.g. Office-31's domains) each split is a ``{task: split}`` dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from litmus.errors import DataError

from ..metrics import Accumulator, MetricSpec
from ..registry import Registry
from ._weights import Weights


@dataclass
class TensorSplit:
    """One split held in memory: ``inputs [N, ...]`` and ``targets {task: [N, ...]}``."""

    inputs: Tensor
    targets: dict[str, Tensor]

    def __post_init__(self) -> None:
        n = len(self.inputs)
        for task, t in self.targets.items():
            if len(t) != n:
                raise DataError(f"task {task!r} has {len(t)} targets for {n} inputs")

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.inputs[idx], {k: v[idx] for k, v in self.targets.items()}


Split = TensorSplit | Dataset


@dataclass
class Splits:
    train: Split | dict[str, Split]
    val: Split | dict[str, Split] | None
    test: Split | dict[str, Split]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v is not None]


@dataclass(frozen=True)
class Option:
    """A dataset option a spec may set (``dataset_options``)."""

    name: str
    default: Any
    help: str = ""


@dataclass
class Defaults:
    """Training defaults from the dataset's paper setting."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str | None = None
    scheduler_options: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """A multi-task benchmark: tasks, data, encoder blocks, heads, losses, metrics."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    multi_input: ClassVar[bool] = False
    #: whether the data are bundled/generated (no path needed)
    bundled: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = ()
    defaults: ClassVar[Defaults] = Defaults()

    def __init__(self, **options: Any) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise DataError(
                f"unknown option(s) {', '.join(unknown)} for dataset '{self.name}'; "
                f"valid: {', '.join(sorted(known)) or 'none'}"
            )
        self.opts: dict[str, Any] = {k: options.get(k, o.default) for k, o in known.items()}
        self.given: frozenset[str] = frozenset(options)  # the options set explicitly (the rest are defaults)
        self.check()

    # --- validation -----------------------------------------------------
    def check(self) -> None:
        """Validate options and on-disk input cheaply (called before training starts)."""

    def require_positive_ints(self, *keys: str) -> None:
        """Raise ``ValueError`` naming the dataset and option unless each option is a positive integer."""
        for k in keys:
            v = self.opts[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise DataError(f"{self.name} option {k} must be a positive integer, got {v!r}")

    def pretrained_weights(self) -> list[Weights]:
        """The pretrained weights the model loads (checked before a study starts; ``litmus weights fetch``)."""
        return []

    # --- data -----------------------------------------------------------
    def load(self) -> Splits:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- model ----------------------------------------------------------
    def encoder_blocks(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """The shared encoder as a list of sequential stages (architectures interleave modules between them)."""
        raise NotImplementedError

    def head(self, task: str) -> nn.Module:  # pragma: no cover - abstract
        """The task-specific decoder applied to the encoder's output."""
        raise NotImplementedError

    def head_input(self, rep: Tensor, x: Tensor) -> Tensor:
        """Hook to adapt the representation before the heads (default: identity)."""
        return rep

    # --- losses and metrics --------------------------------------------
    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def accumulators(self) -> dict[str, Accumulator]:  # pragma: no cover - abstract
        """A fresh metric accumulator per task."""
        raise NotImplementedError

    def metric_specs(self) -> list[MetricSpec]:
        """Every (task, metric, direction) this benchmark reports (plus the task losses)."""
        out = []
        for task, acc in self.accumulators().items():
            for metric, hib in acc.directions.items():  # type: ignore[attr-defined]
                out.append(MetricSpec(task, metric, hib))
        return out


_REGISTRY: Registry[type[Benchmark]] = Registry("dataset", Benchmark)
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get
origin = _REGISTRY.origin


def build(name: str, **options: Any) -> Benchmark:
    """Instantiate (and validate) a registered benchmark."""
    return get(name)(**options)


def required_weights(name: str, **options: Any) -> list[Weights]:
    """The pretrained weights benchmark ``name`` with these options loads, without checking its data (on a
    machine that fetches weights for a cluster the data need not be there)."""
    cls = get(name)
    bench = cls.__new__(cls)
    known = {o.name: o for o in cls.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(unknown)} for dataset '{name}'; valid: {', '.join(sorted(known))}")
    bench.opts = {k: options.get(k, o.default) for k, o in known.items()}
    bench.given = frozenset(options)
    return bench.pretrained_weights()


def conv_block(cin: int, cout: int, *, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


LossFn = Callable[[Tensor, Tensor], Tensor]
