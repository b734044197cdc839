"""One encoder column per task with a task-mixing unit between stages (base of cross-stitch and NDDR)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from litmus.errors import ConfigError, MethodError

from ..datasets.base import Benchmark
from ._mixing import reject_unknown, stage_widths
from .base import MTLModel

SHARED_MODES = ("coupled", "units")


class ColumnModel(MTLModel):
    """``T`` copies of ``benchmark.encoder_blocks()``; after every stage but the last, a unit mixes the T columns.

    Shared parameters (what gradient methods balance), ``shared``:

    * ``"coupled"`` (default): every parameter that receives the gradient of
      more than one task, i.e. the mixing units and every column's stages
      before the last unit. Each column's last stage only serves its task and
      is task-specific with the head.
    * ``"units"``: the mixing units only; whole columns are task-specific
      (cheaper Jacobians; the columns then get the plain weighted-sum
      gradient, which is the convention of some earlier code bases).
    """

    option_names: tuple[str, ...] = ("shared", "channels")

    def __init__(self, benchmark: Benchmark, *, shared: str = "coupled", channels: Sequence[int] | None = None,
                 **unknown: object) -> None:
        super().__init__(benchmark)
        self._extra_options(unknown)
        reject_unknown(unknown, self.name, self.option_names)
        if shared not in SHARED_MODES:
            raise ConfigError(f"architecture '{self.name}' option shared must be one of {', '.join(SHARED_MODES)}, got {shared!r}")
        self.shared_mode = shared
        self.benchmark = benchmark
        columns = [benchmark.encoder_blocks() for _ in self.tasks]
        self.n_stages = len(columns[0])
        if self.n_stages < 1:
            raise MethodError(f"dataset '{benchmark.name}' returned no encoder stages")
        self.widths = stage_widths(columns[0], channels)
        self.columns = nn.ModuleDict({t: nn.ModuleList(c) for t, c in zip(self.tasks, columns)})
        self.units = nn.ModuleList([self.make_unit(w, len(self.tasks)) for w in self.widths[:-1]])
        self.heads = nn.ModuleDict({t: benchmark.head(t) for t in self.tasks})

    def _extra_options(self, unknown: dict[str, object]) -> None:
        """Subclasses pop their own options from ``unknown`` here."""

    def make_unit(self, width: int, n_tasks: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        wanted = tasks or self.tasks
        feats = [x] * len(self.tasks)
        for j in range(self.n_stages - 1):
            feats = [self.columns[t][j](f) for t, f in zip(self.tasks, feats)]
            feats = self.units[j](feats, f"{self.name} unit after stage {j}")
        out = {}
        for t, f in zip(self.tasks, feats):
            if t in wanted:
                rep = self.columns[t][self.n_stages - 1](f)
                out[t] = self.heads[t](self.benchmark.head_input(rep, x))
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        params = list(self.units.parameters())
        if self.shared_mode == "coupled":
            for t in self.tasks:
                for j in range(self.n_stages - 1):
                    params += list(self.columns[t][j].parameters())
        return params

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        first = self.n_stages - 1 if self.shared_mode == "coupled" else 0
        params = [p for j in range(first, self.n_stages) for p in self.columns[task][j].parameters()]
        return params + list(self.heads[task].parameters())
