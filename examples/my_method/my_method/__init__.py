"""An example litmus plugin: Softmax Loss Weighting (an illustration, not a published method).

``w = T * softmax(L / tau)``: tasks with a higher current loss get more weight; ``tau``
(the temperature) is tuned by litmus like any method hyperparameter, and ``tau -> inf``
gives EW. The weights sum to ``T`` (EW's scale), as litmus's convention asks, so the
effective learning rate does not change when switching from EW.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.weighting import HParam, LossWeighting, register


@register
class SoftmaxLossWeighting(LossWeighting):
    name = "softmax_loss"
    paper = "litmus example plugin (examples/my_method): w = T softmax(L / tau)"
    hparams = (HParam("tau", 1.0, low=0.1, high=10.0, log=True, help="softmax temperature"),)

    def __init__(self, num_tasks: int, tau: float = 1.0) -> None:
        super().__init__(num_tasks)
        if tau <= 0:
            raise ValueError(f"softmax_loss.tau must be > 0, got {tau}")
        self.tau = tau

    def weights(self, losses: Tensor) -> Tensor:
        return self.num_tasks * torch.softmax(losses / self.tau, dim=0)
