"""Uncertainty Weighting (Kendall, Gal & Cipolla, CVPR 2018, Eq. 7).

Objective ``sum_t L_t / (2 exp(s_t)) + s_t / 2`` with learned log-variances
``s`` (initialised at 0, so the first weights are 1/2, as in the paper; LibMTL
starts at ``s = -0.5``, first weights ``1/(2 e^{-0.5})`` = 0.82). ``s`` is trained by the trainer's optimiser in its own parameter
group with learning rate ``lr`` (0.025 in the Nash-MTL/FAMO code).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._learned import LearnedLogWeighting
from .registry import register


@register
class UW(LearnedLogWeighting):
    name = "uw"
    paper = "Kendall et al., CVPR 2018"
    unit_weight = 0.5  # 1 / (2 exp(s)) at s = 0

    def __init__(self, num_tasks: int, lr: float = 0.025) -> None:
        super().__init__(num_tasks, lr)
        self.log_var = nn.Parameter(torch.zeros(num_tasks))

    def weights(self, losses: Tensor) -> Tensor:
        return 0.5 * torch.exp(-self.log_var).to(losses.dtype)

    def regularizer(self) -> Tensor:
        return 0.5 * self.log_var.sum()

    def objective_grads(self, losses: Tensor, w: Tensor) -> list[Tensor]:
        """``d/ds_t [L_t / (2 exp(s_t)) + s_t / 2] = 1/2 - w_t L_t``: the floats autograd forms
        (``-(L_t / 2) exp(-s_t) + 1/2``; halving is exact), tests/test_paths.py."""
        return [0.5 - w * losses]
