"""Random Loss Weighting (Lin et al., 'Reasonable Effectiveness of Random Weighting', Algorithm 1).

Fresh weights each step from a named distribution (``sampling.py``), scaled
so that ``E[w_t] = 1``: EW -> RLW keeps the effective learning rate. The
weights come from a dedicated generator so they do not depend on other
random draws (data order, dropout).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import HParam, LossWeighting
from .registry import register
from .sampling import DISTRIBUTIONS, check_distribution, sample


@register
class RLW(LossWeighting):
    name = "rlw"
    paper = "Lin et al., TMLR 2022, Algorithm 1"
    draws_random = True
    hparams = (
        HParam("distribution", "normal", kind="categorical", choices=tuple(DISTRIBUTIONS), tunable=False),
        HParam("seed", 0, kind="int", tunable=False, help="seed of the weight generator when none is given"),
    )

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None,
                 distribution: str = "normal", seed: int = 0) -> None:
        super().__init__(num_tasks, generator)
        self.distribution = check_distribution(distribution)
        self.seed = seed
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(seed)

    def weights(self, losses: Tensor) -> Tensor:
        return sample(self.distribution, self.num_tasks, self.generator, losses.device).to(losses.dtype)
