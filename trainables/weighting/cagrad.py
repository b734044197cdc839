"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021, Algorithm 1).

With the mean gradient ``g0 = (1/T) sum_t g_t``, CAGrad moves along the ``d`` in the ball
``|d - g0| <= c |g0|`` that maximises the worst task improvement ``min_t g_t . d``; by duality
``d = g0 + c |g0| g_w / |g_w|`` with ``w = argmin_{w in simplex} g_w . g0 + c |g0| |g_w|``.
The weights ``1/T + c |g0| w / |g_w|`` are the true coefficients of ``d`` on the task gradients.

Solver (:func:`cagrad_dual`): the dual is a ``T``-dimensional problem on the trace-normalised
Gramian ``G``: minimise ``b.w + s sqrt(w^T G w)`` over the simplex with ``b = G 1/T`` and
``s = c |g0|``. ``T = 2`` has a closed form (the stationary points of a convex function of one
variable are roots of a quadratic); otherwise a one-dimensional root search over the radius
``r = |g_w|`` whose every evaluation is an exact QP on the simplex (quadprog), see
:func:`_dual_by_radius` (the official code's SLSQP took ~0.6 s CPU per call at ``T = 40``).
Checked against torchjd's cvxpy/CLARABEL solution
(cosine of the weights >= 0.9999, tests). As torchjd, ``|g_w| < 1e-4`` (on the Pareto front) gives
zero weights.

Scale: the paper's ``d`` is mean-based; litmus multiplies it by ``T`` (EW's sum scale) and, as the
official code, Nash-MTL's and LibMTL's do by default (``rescale=1``), divides it by ``1 + c^2``
(``rescale=2``: by ``1 + c``; ``0``: no rescaling). ``T`` identical gradients ``g`` give
``T (1 + c) g / (1 + c^2)`` with the default. ``last_weights`` are these effective weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import quadprog
from torch import Tensor

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .mgda import min_norm_simplex
from .registry import register

RESCALES = (0, 1, 2)
_NORM_EPS = 1e-4


def _dual_two(b: np.ndarray, g: np.ndarray, s: float) -> np.ndarray:
    """The minimiser over ``w = (a, 1 - a)``, ``a in [0, 1]``, of ``b.w + s sqrt(w^T g w)``: the best of the
    end points and the stationary points (roots of ``4 d^2 q(a) = s^2 q'(a)^2``, ``q(a) = w^T g w``)."""
    qa = g[0, 0] + g[1, 1] - 2 * g[0, 1]  # q(a) = qa a^2 + qb a + qc
    qb = 2 * (g[0, 1] - g[1, 1])
    qc = g[1, 1]
    d = b[0] - b[1]
    # 4 d^2 (qa a^2 + qb a + qc) = s^2 (2 qa a + qb)^2
    A = 4 * d * d * qa - 4 * s * s * qa * qa
    B = 4 * d * d * qb - 4 * s * s * qa * qb
    C = 4 * d * d * qc - s * s * qb * qb
    candidates = [0.0, 1.0]
    if abs(A) > 1e-300:
        disc = B * B - 4 * A * C
        if disc >= 0:
            r = math.sqrt(disc)
            candidates += [(-B + r) / (2 * A), (-B - r) / (2 * A)]
    elif abs(B) > 1e-300:
        candidates.append(-C / B)

    def f(a: float) -> float:
        return d * a + b[1] + s * math.sqrt(max(qa * a * a + qb * a + qc, 0.0))

    a = min((min(max(x, 0.0), 1.0) for x in candidates), key=f)
    return np.array([a, 1.0 - a])


def _simplex_qp(g: np.ndarray, b: np.ndarray, k: float, lift: float) -> np.ndarray:
    """``argmin_{w in simplex} b.w + (k/2) w^T g w`` (quadprog; ``g + lift I`` strictly convex)."""
    t = g.shape[0]
    c = np.concatenate([np.ones((t, 1)), np.eye(t)], axis=1)
    w = quadprog.solve_qp(k * (g + lift * np.eye(t)), -b, c, np.concatenate([[1.0], np.zeros(t)]), 1)[0]
    w = np.clip(w, 0.0, None)
    return w / w.sum()


def _dual_by_radius(b: np.ndarray, g: np.ndarray, s: float) -> np.ndarray:
    """``argmin_{w in simplex} b.w + s |g_w|`` for ``T > 2`` through ``|x| = min_r |x|^2/(2r) + r/2``: for a
    radius ``r`` the minimiser ``w(r)`` of ``b.w + s w^T g w / (2r)`` is an exact QP (quadprog), and the
    optimum is the root of ``r - |g_{w(r)}|`` (the jointly convex objective minimised over ``r``), bracketed
    by the least norm over the simplex (MGDA's point) and the largest task norm, found by Brent's method."""
    t = g.shape[0]
    if s <= 0.0:
        w = np.zeros(t)
        w[int(np.argmin(b))] = 1.0
        return w
    lift = max(1e-12 * float(np.trace(g)) - float(np.linalg.eigvalsh(g)[0]), 0.0)

    def w_at(r: float) -> np.ndarray:
        return _simplex_qp(g, b, s / r, lift)

    def gap(r: float) -> float:
        w = w_at(r)
        return r - math.sqrt(max(float(w @ g @ w), 0.0))

    least = min_norm_simplex(g)
    low = math.sqrt(max(float(least @ g @ least), 0.0))
    high = math.sqrt(max(float(np.max(np.diag(g))), 0.0))
    low = max(low, 1e-9 * high)
    if high <= low or gap(low) >= 0.0:  # the optimum's norm is at most the least one (or all gradients equal)
        return w_at(low)
    if gap(high) <= 0.0:
        return w_at(high)
    from scipy.optimize import brentq  # scipy.optimize loads only when T > 2 needs the root search

    r = brentq(gap, low, high, xtol=1e-14 * high, rtol=1e-12, maxiter=200)
    return w_at(r)


def cagrad_dual(g: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's weights ``1/T + c |g0| w / |g_w|`` for a trace-normalised Gramian ``g`` (float64, ``[T, T]``)."""
    t = g.shape[0]
    ones = np.full(t, 1.0 / t)
    b = g @ ones
    s = c * math.sqrt(max(float(ones @ b), 0.0))
    if t == 1:
        w = np.ones(1)
    elif t == 2:
        w = _dual_two(b, g, s)
    else:
        w = _dual_by_radius(b, g, s)
    norm = math.sqrt(max(float(w @ g @ w), 0.0))
    if norm < _NORM_EPS:
        return np.zeros(t)
    return ones + (s / norm) * w


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
            raise ConfigError(f"cagrad.c must be >= 0, got {c}")
        if rescale not in RESCALES:
            raise ConfigError(f"cagrad.rescale must be one of {list(RESCALES)}, got {rescale!r}")
        self.c, self.rescale = c, rescale
        self._factor = num_tasks / (1.0, 1.0 + c * c, 1.0 + c)[rescale]

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        g = gramian(jacobian).double().cpu().numpy()
        trace = float(np.trace(g))
        g = g / trace if trace >= _NORM_EPS else g
        w = cagrad_dual(0.5 * (g + g.T), self.c)
        return self._factor * torch.from_numpy(w).to(device=jacobian.device, dtype=jacobian.dtype)
