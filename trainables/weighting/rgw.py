"""Random Gradient Weighting (Lin et al., 'Reasonable Effectiveness of Random Weighting', TMLR 2022, Algorithm 2).

Each step draws weights from the same distributions as RLW (``sampling.py``: normal+softmax by
default) with the method's own seeded generator, and the shared part is updated along
``sum_t w_t J_t``; the task heads get their own unweighted gradients (Algorithm 2, line 10).

Scale: ``sampling.sample`` returns simplex weights times ``T`` (``E[w_t] = 1``), so the expected
direction equals EW's (the plain sum of the task gradients) and ``T`` identical gradients ``g``
give exactly ``T * g``. Default space "rep": the paper computes the task gradients w.r.t. the
shared representation (Sec. 3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._grad import WeightedGradientMethod, make_generator
from .base import HParam
from .registry import register
from .sampling import DISTRIBUTIONS, check_distribution, sample


@register
class RGW(WeightedGradientMethod):
    name = "rgw"
    paper = "Lin et al., TMLR 2022, Algorithm 2"
    draws_random = True
    spaces = ("rep", "param")
    default_space = "rep"
    hparams = (
        HParam("distribution", "normal", kind="categorical", choices=tuple(DISTRIBUTIONS), tunable=False),
        HParam("seed", 0, kind="int", tunable=False, help="seed of the weight generator when none is given"),
    )

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None,
                 distribution: str = "normal", seed: int = 0) -> None:
        super().__init__(num_tasks, make_generator(generator, seed))
        self.distribution = check_distribution(distribution)
        self.seed = seed

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        assert self.generator is not None
        return sample(self.distribution, self.num_tasks, self.generator, jacobian.device)
