"""FairGrad: alpha-fair resource allocation (Ban & Ji, ICML 2024, Eq. 4, Algorithm 1).

Weights ``w > 0`` solving ``G w = w^(-1/alpha)`` (``G = J J^T``), direction ``sum_t w_t g_t``;
``alpha = 1`` is proportional fairness (Nash-MTL's condition without its clip). Wraps
``torchjd.aggregation.FairGradWeighting`` (scipy ``least_squares`` from ``1/T``, as the official
code). torchjd does not check the solver's result: litmus raises ``RuntimeError`` when the
weights are not finite and positive.

Solver (:func:`fair_weights`): ``G w = w^(-1/alpha)`` is the stationarity of the strictly convex
``phi(w) = w^T G w / 2 - sum_t f(w_t)`` on ``w > 0`` (``f' = w^(-1/alpha)``: ``f = log w`` for
``alpha = 1``, ``alpha/(alpha-1) w^((alpha-1)/alpha)`` otherwise; Hessian ``G + diag(w^(-1/alpha-1)/alpha)``,
positive definite), so the solution is unique and damped Newton finds it: a ``T x T`` solve per
iteration, a backtracking line search on ``phi`` that keeps ``w > 0``, stopped (after one last full
step) once the squared Newton decrement is below ``1e-14 (1 + |phi|)``, from the equal weights that solve the problem along ``1``. The solve is in the units
of ``G / |G|`` (``w(c G) = c^(-alpha/(1+alpha)) w(G)``). It takes ~0.1 ms at ``T = 2`` where scipy's
``least_squares`` (torchjd, the official code) took ~7 ms, and agrees with it (tests: cosine of the
directions >= 0.9999), and where ``least_squares`` stops short (tiny Gramians: huge weights) Newton still
solves the condition. A solution must reach a relative residual of ``1e-7``; where Newton does not
(no positive solution, e.g. a task with a zero gradient, or a nearly zero non-negative combination of
the gradients) the step falls back to torchjd's ``least_squares``, as before.

Scale (part of the method, kept): for ``T`` identical gradients ``g`` the weights are equal,
``s = (T |g|^2)^(-alpha/(1+alpha))``, and the direction is ``T s g`` (``sqrt(T) g/|g|`` for
``alpha = 1``). Cost: one ``T x T`` device->host copy and a few ``T x T`` solves per step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register


#: squared Newton decrement (relative to 1 + |phi|) at which the solve takes its last step; iterations at most
_TOL, _MAX_ITER = 1e-14, 100
#: relative residual ``|G w - w^(-1/alpha)| / |w^(-1/alpha)|`` a solution must reach (else the fallback)
_RESIDUAL = 1e-7


def _phi(g: np.ndarray, w: np.ndarray, alpha: float) -> float:
    f = np.log(w) if alpha == 1.0 else alpha / (alpha - 1.0) * np.power(w, (alpha - 1.0) / alpha)
    return 0.5 * float(w @ g @ w) - float(f.sum())


def _checked(u: np.ndarray, w: np.ndarray, alpha: float, scale: float) -> np.ndarray | None:
    """``w`` in the Gramian's units if it solves the condition to :data:`_RESIDUAL` (relative), else None."""
    target = np.power(w, -1.0 / alpha)
    if not np.linalg.norm(u @ w - target) <= _RESIDUAL * np.linalg.norm(target):
        return None
    return w * scale ** (-alpha / (1.0 + alpha))


def fair_weights(g: np.ndarray, alpha: float, max_iter: int = _MAX_ITER) -> np.ndarray | None:
    """The ``w > 0`` with ``g w = w^(-1/alpha)`` for a PSD ``g`` (float64 ``[T, T]``), by damped Newton on
    ``phi`` (module docstring); None if it does not converge in ``max_iter`` iterations."""
    t = g.shape[0]
    scale = float(np.linalg.norm(g))
    if not math.isfinite(scale) or scale <= 0.0:
        return None
    u = 0.5 * (g + g.T) / scale
    total = float(u.sum())
    if total <= 0.0:
        return None
    w = np.full(t, (t / total) ** (alpha / (1.0 + alpha)))  # the solution along 1
    p = -1.0 / alpha
    value = _phi(u, w, alpha)
    for _ in range(max_iter + 1):
        grad = u @ w - np.power(w, p)
        try:
            step = np.linalg.solve(u + np.diag(np.power(w, p - 1.0) / alpha), grad)
        except np.linalg.LinAlgError:
            return None
        dec = float(grad @ step)
        if not math.isfinite(dec):
            return None
        if dec < _TOL * (1.0 + abs(value)):  # converged: one last full step (quadratic convergence)
            last = w - step
            return _checked(u, last if np.all(last > 0) else w, alpha, scale)
        # the largest step that keeps w > 0 (with a margin), then halve until phi decreases enough
        shrink = step > 0
        size = min(1.0, 0.99 * float(np.min(w[shrink] / step[shrink]))) if shrink.any() else 1.0
        while True:
            cand = w - size * step
            new = _phi(u, cand, alpha)
            if new <= value - 0.25 * size * dec:
                break
            size *= 0.5
            if size < 1e-12:  # phi no longer decreases in floating point: converged if the residual is small
                return _checked(u, w, alpha, scale)
        w, value = cand, new
    return None


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
        from torchjd.aggregation import FairGradWeighting  # torchjd (cvxpy, scipy.stats) loads when the method is built
        self._weighting = FairGradWeighting(alpha=alpha)

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        g = gramian(jacobian).double()
        solved = fair_weights(g.cpu().numpy(), self.alpha)
        w = torch.from_numpy(solved).to(g.device) if solved is not None else self._weighting(g)
        if not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
            raise RuntimeError(f"fairgrad: the solver returned invalid weights {w.tolist()} at step {self.steps - 1}")
        return w
