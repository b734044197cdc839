"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022, Algorithm 1, Eq. 4).

Weights ``alpha > 0`` solving the bargaining condition ``G alpha = 1 / alpha`` (``G = J J^T``),
recomputed every ``update_every`` steps (the previous weights are reused in between); the
direction ``sum_t alpha_t g_t`` is then clipped to norm ``max_norm`` (0 disables the clip).

Solver (:func:`bargaining_weights`): the condition is the stationarity of the strictly convex
``f(alpha) = alpha^T G alpha / 2 - sum_t log alpha_t`` on ``alpha > 0`` (gradient
``G alpha - 1/alpha``, Hessian ``G + diag(1/alpha^2)``), so its solution is unique and Newton's
method finds it: ``f`` is self-concordant, so the damped step ``1 / (1 + lambda)`` (``lambda``
the Newton decrement) stays positive and converges from any start, quadratically at the end.
A ``T x T`` solve per iteration, stopped at ``lambda < 1e-10``; warm-started from the previous
update's solution (a few iterations), from ``1`` at the first. The paper's code (and LibMTL's,
torchjd's) approximates the same solution by ``max_iter`` sequential convex problems (cvxpy +
ECOS, stopped at ``|G alpha - 1/alpha| < 1e-3``); where that sequence converges the two agree
(cosine >= 0.9999, tests), and its sub-problems can be unbounded below (then it keeps a stale
iterate or, at the first step, EW's weights) where Newton still converges.
No solution exists when a non-negative combination of the gradients is zero (a task with an
all-zero gradient; the gradients at a Pareto-stationary point): then ``f`` is unbounded below and
``direction`` raises ``RuntimeError`` naming the step, as it does when ``max_iter`` Newton
iterations do not converge.

The solve is in the scale-free units of ``G / |G|`` (``alpha(c G) = alpha(G) / sqrt(c)``), so a
representation's tiny Gramian (``|G| ~ 1e-5``) is as well conditioned as any.

Scale (part of the method's definition, kept): ``|sum_t alpha_t g_t| = sqrt(T)`` before the clip,
so ``T`` identical gradients ``g`` give ``min(sqrt(T), max_norm) * g / |g|``. ``last_weights``
are the weights after the clip. Cost: one ``T x T`` device->host copy and a few ``T x T`` solves
per updating step.
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

#: Newton decrement at which the solve stops, and below which the full Newton step is taken
_TOL, _FULL_STEP = 1e-10, 0.25


class NoBargainingSolution(RuntimeError):
    """``G alpha = 1/alpha`` has no positive solution (or was not reached in the allowed iterations)."""


def bargaining_weights(g: np.ndarray, start: np.ndarray | None = None, max_iter: int = 100) -> tuple[np.ndarray, int]:
    """The ``alpha > 0`` with ``g alpha = 1 / alpha`` for a PSD ``g`` (float64 ``[T, T]``) and the Newton
    iterations it took (damped Newton on ``alpha^T g alpha / 2 - sum log alpha``)."""
    t = g.shape[0]
    diag = np.diag(g)
    if not np.all(diag > 1e-12 * max(float(diag.max()), 1e-300)):
        raise NoBargainingSolution(f"task(s) {np.flatnonzero(diag <= 1e-12 * max(float(diag.max()), 1e-300)).tolist()} "
                                   "have a zero gradient")
    a = np.ones(t) if start is None else np.array(start, dtype=np.float64)
    if not np.all(np.isfinite(a) & (a > 0)):
        a = np.ones(t)
    lam = math.inf
    for k in range(max_iter + 1):
        grad = g @ a - 1.0 / a
        try:  # the Hessian is positive definite; it is singular in floating point only as |alpha| diverges
            step = np.linalg.solve(g + np.diag(1.0 / (a * a)), grad)
        except np.linalg.LinAlgError:
            break
        lam = math.sqrt(max(float(grad @ step), 0.0))
        if lam < _TOL:
            return a, k
        if k == max_iter or not math.isfinite(lam):
            break
        a = a - (step if lam < _FULL_STEP else step / (1.0 + lam))
    raise NoBargainingSolution(f"Newton stopped after {k} of at most {max_iter} iterations (decrement {lam:.3g}, "
                               f"|alpha| {float(np.linalg.norm(a)):.3g}): a non-negative combination of the task "
                               "gradients is (nearly) zero")


@register
class NashMTL(WeightedGradientMethod):
    name = "nash_mtl"
    paper = "Navon et al., ICML 2022, Algorithm 1"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("update_every", 1, kind="int", low=1, high=100, log=True, help="recompute the weights every k steps"),
        HParam("max_iter", 100, kind="int", low=1, high=1000, tunable=False,
               help="Newton iterations at most per update (it stops at convergence; not converging raises)"),
        HParam("max_norm", 1.0, low=0.1, high=10.0, log=True, tunable=False, help="clip of the direction's norm (0: none)"),
    )

    def __init__(self, num_tasks: int, update_every: int = 1, max_iter: int = 100, max_norm: float = 1.0) -> None:
        super().__init__(num_tasks)
        if update_every < 1 or max_iter < 1 or max_norm < 0:
            raise ConfigError(
                f"nash_mtl needs update_every >= 1, max_iter >= 1, max_norm >= 0; "
                f"got {update_every}, {max_iter}, {max_norm}"
            )
        self.update_every, self.max_iter, self.max_norm = update_every, max_iter, max_norm
        #: the last solution in the units of ``G / |G|`` (the next solve's start) and in the Jacobian's units
        self.unit_alpha: np.ndarray | None = None
        self.alpha: np.ndarray | None = None
        #: Newton iterations of the last update
        self.iterations = 0

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        step = self.steps - 1
        if step % self.update_every == 0 or self.alpha is None:
            g = gramian(jacobian).double().cpu().numpy()
            scale = float(np.linalg.norm(g))
            if not math.isfinite(scale) or scale <= 0.0:
                raise RuntimeError(f"nash_mtl: the task gradients' Gramian has norm {scale} at step {step}; "
                                   "no bargaining solution")
            try:
                unit, self.iterations = bargaining_weights(0.5 * (g + g.T) / scale, self.unit_alpha, self.max_iter)
            except NoBargainingSolution as e:
                raise RuntimeError(f"nash_mtl: no bargaining solution at step {step}: {e}") from e
            self.unit_alpha, self.alpha = unit, unit / math.sqrt(scale)
        alpha = torch.from_numpy(self.alpha).to(device=jacobian.device, dtype=jacobian.dtype)
        if self.max_norm > 0:
            norm = torch.linalg.norm(alpha @ jacobian.flatten(1))
            if norm > self.max_norm:
                alpha = alpha / norm * self.max_norm
        return alpha
