"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 'Jacobian Descent for Multi-Objective Optimization', arXiv 2406.16232, 2024, Eq. 5).

Each task gradient is projected onto the dual cone of all task gradients (the set of directions
that conflict with none), and the projections are averaged. Wraps
``torchjd.aggregation.UPGradWeighting`` (dual-cone projections as ``T`` small QPs with quadprog on
the trace-normalised Gramian, regularised by ``reg_eps * I``; a failed QP raises).

Scale: torchjd averages (preference ``1/T``); litmus multiplies by ``T`` (EW's sum), so ``T``
identical gradients ``g`` give ``T * g``.
"""

from __future__ import annotations

from torch import Tensor

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register


@register
class UPGrad(WeightedGradientMethod):
    name = "upgrad"
    paper = "Quinton & Rey, arXiv 2406.16232 (2024), Eq. 5"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("reg_eps", 1e-4, low=1e-6, high=1e-2, log=True, tunable=False,
               help="ridge added to the normalised Gramian so that the QPs are strictly convex"),
    )

    def __init__(self, num_tasks: int, reg_eps: float = 1e-4) -> None:
        super().__init__(num_tasks)
        if reg_eps < 0:
            raise ConfigError(f"upgrad.reg_eps must be >= 0, got {reg_eps}")
        self.reg_eps = reg_eps
        from torchjd.linalg import QuadprogProjector  # torchjd (cvxpy, scipy.stats) loads when the method is built
        from torchjd.aggregation import UPGradWeighting
        self._weighting = UPGradWeighting(projector=QuadprogProjector(reg_eps=reg_eps))

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        return self.num_tasks * self._weighting(gramian(jacobian))
