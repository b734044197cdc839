"""IGBv1: improvable gap balancing by a heuristic (Dai et al., 'Improvable Gap Balancing for MTL', UAI 2023).

The objective is ``sum_t w_t log L_t`` with ``w = T * softmax(L / L_base)``,
``L_base`` the mean training losses of the first epoch (equal weights during
that epoch). The effective weights on the raw losses are ``w_t / L_t``
(the derivative of the log): those are what this method returns and logs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from .base import HParam, LossWeighting
from .registry import register


@register
class IGBv1(LossWeighting):
    name = "igb_v1"
    paper = "Dai et al., UAI 2023 (IGBv1)"
    hparams = (HParam("base_epoch", 1, kind="int", low=1, high=3, tunable=False,
                      help="epoch whose mean training losses are the base"),)

    def __init__(self, num_tasks: int, base_epoch: int = 1) -> None:
        super().__init__(num_tasks)
        if base_epoch < 1:
            raise ConfigError(f"igb_v1.base_epoch must be >= 1, got {base_epoch}")
        self.base_epoch = base_epoch
        self.base: Tensor | None = None

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        if epoch == self.base_epoch:
            self.base = mean_losses.detach().float().clamp_min(1e-12)

    def weights(self, losses: Tensor) -> Tensor:
        safe = losses.detach().clamp_min(1e-12)
        if self.base is None:
            w = torch.ones_like(safe)
        else:
            w = self.num_tasks * torch.softmax(safe / self.base.to(safe.device, safe.dtype), dim=0)
        return w / safe
