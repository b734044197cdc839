"""Gradient Vaccine (Wang et al., ICLR 2021, Algorithm 1 / Eq. 3).

For each task ``i`` and the other tasks ``j`` in a random order: when the cosine
``phi_ij = cos(g_i^PC, g_j)`` is below the EMA target ``phi^_ij``, add
``|g_i^PC| (phi^ sqrt(1-phi^2) - phi sqrt(1-phi^2^)) / (|g_j| sqrt(1-phi^2^)) g_j`` to ``g_i^PC``;
then ``phi^_ij <- (1 - beta) phi^_ij + beta phi_ij`` (targets start at 0, so the first step is
PCGrad-like). The direction is ``sum_i g_i^PC``; its coefficients on the original gradients are
the effective weights (``last_weights``).

Wraps ``torchjd.aggregation.GradVacWeighting`` (stateful: keeps ``phi^`` across calls, in this
module's state). torchjd draws the orders from the global RNG; litmus runs it under a seed drawn
from the method's generator (same seed -> same directions). Granularity: the whole shared part
(or the whole representation), not per layer. Scale: a sum, like EW; ``T`` identical gradients
``g`` give ``T * g``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian, make_generator, seeded_global_rng
from .base import HParam
from .registry import register


@register
class GradVac(WeightedGradientMethod):
    name = "gradvac"
    paper = "Wang et al., ICLR 2021, Algorithm 1"
    draws_random = True
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("beta", 0.5, low=0.01, high=1.0, log=True, help="EMA rate of the cosine targets"),
        HParam("seed", 0, kind="int", tunable=False, help="seed of the task orders when no generator is given"),
    )

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None, beta: float = 0.5, seed: int = 0) -> None:
        super().__init__(num_tasks, make_generator(generator, seed))
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(f"gradvac.beta must be in [0, 1], got {beta}")
        self.beta, self.seed = beta, seed
        from torchjd.aggregation import GradVacWeighting  # torchjd (cvxpy, scipy.stats) loads when the method is built
        self._weighting = GradVacWeighting(beta=beta)

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        assert self.generator is not None
        with seeded_global_rng(self.generator):
            return self._weighting(gramian(jacobian))
