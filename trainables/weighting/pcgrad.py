"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020, Algorithm 1).

For each task ``i``, ``g_i^PC`` starts at ``g_i`` and, over the other tasks ``j`` in a random
order, loses its component along ``g_j`` whenever ``g_i^PC . g_j < 0``; the direction is
``sum_i g_i^PC``, a linear combination of the task gradients whose coefficients are the effective
weights (``last_weights``).

Wraps ``torchjd.aggregation.PCGradWeighting`` (same algorithm, on the Gramian). torchjd draws
the orders from torch's global RNG; litmus runs it under a seed drawn from the method's own
generator (``_grad.seeded_global_rng``), so the same seed gives the same directions and the
global RNG is left as it was. Scale: a sum, like EW; ``T`` identical gradients give ``T * g``.
With two tasks no conflict is left (``g_i^PC . g_j >= 0``); with three or more the paper's
sequential projections only guarantee it against the last task of each order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._grad import WeightedGradientMethod, gramian, make_generator, seeded_global_rng
from .base import HParam
from .registry import register


@register
class PCGrad(WeightedGradientMethod):
    name = "pcgrad"
    paper = "Yu et al., NeurIPS 2020, Algorithm 1"
    draws_random = True
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (HParam("seed", 0, kind="int", tunable=False, help="seed of the projection orders when no generator is given"),)

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None, seed: int = 0) -> None:
        super().__init__(num_tasks, make_generator(generator, seed))
        self.seed = seed
        from torchjd.aggregation import PCGradWeighting  # torchjd (cvxpy, scipy.stats) loads when the method is built
        self._weighting = PCGradWeighting()

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        assert self.generator is not None
        with seeded_global_rng(self.generator):
            return self._weighting(gramian(jacobian))
