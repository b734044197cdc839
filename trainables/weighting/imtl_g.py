"""IMTL-G: impartial gradient weighting (Liu et al., ICLR 2021, Sec. 3.2, closed form).

Weights ``alpha`` with ``sum_t alpha_t = 1`` such that the aggregate ``g = sum_t alpha_t g_t`` has
equal projections on every unit task gradient ``u_t = g_t / |g_t|``. Wraps
``torchjd.aggregation.IMTLGWeighting`` (``alpha ~ G^+ |g|``, normalised to sum 1; the
pseudo-inverse generalises the paper's inverse to linearly dependent gradients). torchjd returns
zero weights when ``sum(G^+ |g|)`` vanishes (no impartial direction): a zero update for the
shared part.

Scale: the paper's weights sum to 1; litmus multiplies them by ``T`` (EW's scale), so ``T``
identical gradients ``g`` give ``T * g``. Default space "rep": the paper computes the gradients
w.r.t. the shared feature ``z``.
"""

from __future__ import annotations

from torch import Tensor

from ._grad import WeightedGradientMethod, gramian
from .registry import register


@register
class IMTLG(WeightedGradientMethod):
    name = "imtl_g"
    paper = "Liu et al., ICLR 2021, Sec. 3.2 (IMTL-G)"
    spaces = ("param", "rep")
    default_space = "rep"

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        from torchjd.aggregation import IMTLGWeighting  # torchjd (cvxpy, scipy.stats) loads when the method is built
        self._weighting = IMTLGWeighting()

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        return self.num_tasks * self._weighting(gramian(jacobian))
