"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021, Algorithm 1).

With the mean gradient ``g0 = (1/T) sum_t g_t``, CAGrad moves along the ``d`` in the ball
``|d - g0| <= c |g0|`` that maximises the worst task improvement ``min_t g_t . d``; by duality
``d = g0 + c |g0| g_w / |g_w|`` with ``w = argmin_{w in simplex} g_w . g0 + c |g0| |g_w|``.
Wraps ``torchjd.aggregation.CAGradWeighting`` (same dual, solved with cvxpy/CLARABEL on the
trace-normalised Gramian; the official code uses scipy SLSQP), whose weights
``1/T + c |g0| w / |g_w|`` are the true coefficients of ``d`` on the task gradients.

Scale: the paper's ``d`` is mean-based; litmus multiplies it by ``T`` (EW's sum scale) and, as the
official code, Nash-MTL's and LibMTL's do by default (``rescale=1``), divides it by ``1 + c^2``
(``rescale=2``: by ``1 + c``; ``0``: no rescaling). ``T`` identical gradients ``g`` give
``T (1 + c) g / (1 + c^2)`` with the default. ``last_weights`` are these effective weights.
"""

from __future__ import annotations

from torch import Tensor
from torchjd.aggregation import CAGradWeighting

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register

RESCALES = (0, 1, 2)


@register
class CAGrad(WeightedGradientMethod):
    name = "cagrad"
    paper = "Liu et al., NeurIPS 2021, Algorithm 1"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("c", 0.4, low=0.2, high=0.8, help="radius of the ball around the mean gradient, in units of |g0|"),
        HParam("rescale", 1, kind="categorical", choices=RESCALES, tunable=False,
               help="divide the direction by 1 (0), 1 + c^2 (1, official default) or 1 + c (2)"),
    )

    def __init__(self, num_tasks: int, c: float = 0.4, rescale: int = 1) -> None:
        super().__init__(num_tasks)
        if c < 0:
            raise ValueError(f"cagrad.c must be >= 0, got {c}")
        if rescale not in RESCALES:
            raise ValueError(f"cagrad.rescale must be one of {list(RESCALES)}, got {rescale!r}")
        self.c, self.rescale = c, rescale
        self._weighting = CAGradWeighting(c=c)
        self._factor = num_tasks / (1.0, 1.0 + c * c, 1.0 + c)[rescale]

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        return self._factor * self._weighting(gramian(jacobian))
