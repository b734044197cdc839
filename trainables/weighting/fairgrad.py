"""FairGrad: alpha-fair resource allocation (Ban & Ji, ICML 2024, Eq. 4, Algorithm 1).

Weights ``w > 0`` solving ``G w = w^(-1/alpha)`` (``G = J J^T``), direction ``sum_t w_t g_t``;
``alpha = 1`` is proportional fairness (Nash-MTL's condition without its clip). Wraps
``torchjd.aggregation.FairGradWeighting`` (scipy ``least_squares`` from ``1/T``, as the official
code). torchjd does not check the solver's result: litmus raises ``RuntimeError`` when the
weights are not finite and positive.

Scale (part of the method, kept): for ``T`` identical gradients ``g`` the weights are equal,
``s = (T |g|^2)^(-alpha/(1+alpha))``, and the direction is ``T s g`` (``sqrt(T) g/|g|`` for
``alpha = 1``). Cost: one ``T x T`` device->host copy and a scipy solve per step.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchjd.aggregation import FairGradWeighting

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register


@register
class FairGrad(WeightedGradientMethod):
    name = "fairgrad"
    paper = "Ban & Ji, ICML 2024, Eq. 4"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (HParam("alpha", 1.0, low=0.25, high=4.0, log=True, help="fairness parameter (1: proportional fairness)"),)

    def __init__(self, num_tasks: int, alpha: float = 1.0) -> None:
        super().__init__(num_tasks)
        if alpha <= 0:
            raise ConfigError(f"fairgrad.alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self._weighting = FairGradWeighting(alpha=alpha)

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        w = self._weighting(gramian(jacobian).double())
        if not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
            raise RuntimeError(f"fairgrad: the solver returned invalid weights {w.tolist()} at step {self.steps - 1}")
        return w
