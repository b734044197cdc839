"""Dynamic Weight Average (Liu, Johns & Davison, 'End-to-End Multi-Task Learning with Attention', CVPR 2019, Eq. 6).

``w_t = T * softmax_t(r_t / temperature)`` with ``r_t = L_t(e-1) / L_t(e-2)``
the ratio of the last two epochs' mean training losses; weights are 1 for the
first two epochs. Weights sum to ``T``, EW's scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from .base import HParam, LossWeighting
from .registry import register


@register
class DWA(LossWeighting):
    name = "dwa"
    paper = "Liu et al., CVPR 2019"
    hparams = (HParam("temperature", 2.0, low=0.5, high=10.0, log=True),)

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        if temperature <= 0:
            raise ConfigError(f"dwa.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.history: list[Tensor] = []
        self.register_buffer("_w", torch.ones(num_tasks))

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        self.history = (self.history + [mean_losses.detach().float().cpu()])[-2:]
        if len(self.history) == 2:
            ratio = self.history[1] / self.history[0].clamp_min(1e-12)
            self._w = (self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)).to(self._w.device)

    def weights(self, losses: Tensor) -> Tensor:
        return self._w.to(losses.device, losses.dtype)
