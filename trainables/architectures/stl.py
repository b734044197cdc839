"""Single-task learning: one independent model (the dataset's encoder + that task's head) per task.

Nothing is shared: ``shared_parameters()`` is empty and task ``t``'s head only sees task
``t``'s encoder, so training the sum of the task losses (EW) with an element-wise optimiser
(Adam, AdamW, SGD with weight decay and momentum) trains ``T`` separate single-task models in
one trial. It is the baseline of Nash-MTL-style Delta-m tables (``method: stl``; see
``trainables/weighting/stl.py``).

Initialisation: every task's model is built under the trial's seed alone (``torch.initial_seed()``,
which the trainer sets with ``torch.manual_seed(seed)``): encoder first, then the head, in a
forked RNG. So each task's model starts from exactly the parameters a single-task run (an HPS
model with only that task) with the same seed would build, whatever the other tasks are, and the
global RNG is left as it was. Gradient clipping by the global norm (``grad_clip``) would couple the
tasks: the config refuses it with this architecture.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..datasets.base import Benchmark
from .base import MTLModel, register


@register
class STL(MTLModel):
    name = "stl"
    supports_rep = False

    def __init__(self, benchmark: Benchmark) -> None:
        super().__init__(benchmark)
        self.benchmark = benchmark
        seed = torch.initial_seed()
        encoders, heads = {}, {}
        for t in self.tasks:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoders[t] = nn.Sequential(*benchmark.encoder_blocks())
                heads[t] = benchmark.head(t)
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        return {t: self.heads[t](self.benchmark.head_input(self.encoders[t](x), x)) for t in (tasks or self.tasks)}

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.encoders[task].parameters()) + list(self.heads[task].parameters())
