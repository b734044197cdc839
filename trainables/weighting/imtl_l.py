"""IMTL-L: learned loss scales (Liu et al., 'Towards Impartial Multi-task Learning', ICLR 2021, Sec. 3.3).

Objective ``sum_t exp(s_t) L_t - s_t``: at the optimum of ``s`` every scaled
loss equals 1. ``s`` starts at 0 (weights 1, EW's) and is trained in its own
parameter group with learning rate ``lr``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._learned import LearnedLogWeighting
from .registry import register


@register
class IMTLL(LearnedLogWeighting):
    name = "imtl_l"
    paper = "Liu et al., ICLR 2021 (IMTL-L)"

    def __init__(self, num_tasks: int, lr: float = 0.025) -> None:
        super().__init__(num_tasks, lr)
        self.log_scale = nn.Parameter(torch.zeros(num_tasks))

    def weights(self, losses: Tensor) -> Tensor:
        return torch.exp(self.log_scale).to(losses.dtype)

    def regularizer(self) -> Tensor:
        return -self.log_scale.sum()

    def objective_grads(self, losses: Tensor, w: Tensor) -> list[Tensor]:
        """``d/ds_t [exp(s_t) L_t - s_t] = w_t L_t - 1``: the floats autograd forms, tests/test_paths.py."""
        return [w * losses - 1]
