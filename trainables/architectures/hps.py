"""Hard parameter sharing (Caruana, 1993): one shared encoder, one head per task.

The encoder's output is the shared representation used by
representation-space gradient methods (RGW, MGDA-UB, GradDrop, ...).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..datasets.base import Benchmark
from .base import MTLModel, register


@register
class HPS(MTLModel):
    name = "hps"
    supports_rep = True

    def __init__(self, benchmark: Benchmark) -> None:
        super().__init__(benchmark)
        self.benchmark = benchmark
        self.encoder = nn.Sequential(*benchmark.encoder_blocks())
        self.heads = nn.ModuleDict({t: benchmark.head(t) for t in self.tasks})

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, rep: Tensor, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        h = self.benchmark.head_input(rep, x)
        return {t: self.heads[t](h) for t in (tasks or self.tasks)}

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        return self.decode(self.encode(x), x, tasks)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters())
