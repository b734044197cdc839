"""MMoE, Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): E expert encoders and a softmax gate per task.

Every expert is a full copy of ``benchmark.encoder_blocks()``. Task ``t``'s
representation is ``sum_e g_t(x)_e * expert_e(x)`` with
``g_t(x) = softmax(W_t z(x))``, a linear gate on the input as in Ma et al.
For image inputs ``z(x)`` is the input average-pooled to a
``gate_pool x gate_pool`` grid and flattened (a linear map of the full
image would have millions of weights at NYUv2 size); for vector inputs it is
the input itself. Inputs that are neither (token ids) are refused.

Shared parameters: the experts (every task's gradient reaches them); each
gate belongs to its task, with the head. No single shared representation
(``supports_rep = False``). Options: ``experts`` (default 4), ``gate_pool``
(default 4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError, MethodError

from ..datasets.base import Benchmark
from ._mixing import input_width, reject_unknown
from .base import MTLModel, register


@register
class MMoE(MTLModel):
    name = "mmoe"
    supports_rep = False

    def __init__(self, benchmark: Benchmark, *, experts: int = 4, gate_pool: int = 4, **unknown: object) -> None:
        super().__init__(benchmark)
        reject_unknown(unknown, self.name, ("experts", "gate_pool"))
        for k, v in (("experts", experts), ("gate_pool", gate_pool)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"mmoe option {k} must be a positive integer, got {v!r}")
        self.benchmark = benchmark
        self.experts = nn.ModuleList([nn.Sequential(*benchmark.encoder_blocks()) for _ in range(experts)])
        self.kind, cin = input_width(self.experts[0][0])
        self.gate_pool = gate_pool
        gate_in = cin * gate_pool * gate_pool if self.kind == "conv" else cin
        self.gates = nn.ModuleDict({t: nn.Linear(gate_in, experts) for t in self.tasks})
        self.heads = nn.ModuleDict({t: benchmark.head(t) for t in self.tasks})

    def gate_input(self, x: Tensor) -> Tensor:
        if self.kind == "conv":
            if x.dim() != 4:
                raise MethodError(f"mmoe: expected image inputs [N, C, H, W], got shape {tuple(x.shape)}")
            return nn.functional.adaptive_avg_pool2d(x, self.gate_pool).flatten(1)
        return x.flatten(1)

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        wanted = tasks or self.tasks
        outs = torch.stack([e(x) for e in self.experts], dim=1)  # [N, E, ...]
        z = self.gate_input(x).to(outs.dtype)
        res = {}
        for t in wanted:
            g = torch.softmax(self.gates[t](z), dim=-1)
            rep = (g.reshape(*g.shape, *([1] * (outs.dim() - 2))) * outs).sum(1)
            res[t] = self.heads[t](self.benchmark.head_input(rep, x))
        return res

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.gates[task].parameters()) + list(self.heads[task].parameters())
