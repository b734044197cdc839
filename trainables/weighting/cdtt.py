"""CDTT: central direction (EDM) plus task tensioners (Nakamura, Grassi & Wolf, arXiv 2204.06698).

The retuned comparison (Gama & Grassi) runs it as "CDTT". litmus's reading of the published
method (paper and its authors' code, read for the facts only):

1. ``d = sum_t c_t g_t``: EDM's equal-angle direction as a convex combination of the raw
   gradients (``edm.py``).
2. A sliding window of the last ``window`` (10) gradient norms per task; once full, each step
   compares its sum ``S_t`` with the previous step's sum ``S'_t``: the parametrisation
   ``p_t = S_t / S'_t + log10(L_t)`` grows when a task's gradients grow or its loss is large.
3. The tension ``tau_t = max(0, a * sigmoid(e (p_t - 1)) + 1 - a)`` with ``a = alpha``
   (``a / (1 + exp(-e p + e)) + 1 - a``); ``alpha`` in [0.2, 1] in the retuned comparison.
4. The tension vector pulls ``d`` toward each task: ``v = d + sum_t tau_t (g_t - d) / |g_t - d|``.
   In weights: ``w_j = c_j (1 - sum_t tau_t / m_t) + tau_j / m_j`` with ``m_t = |g_t - d|``.
5. For each task ``i`` in order whose gradient makes an angle above 90 degrees with ``v``,
   ``v`` is replaced by ``tan(pi - angle(g_i, v - g_i)) |g_i|`` times the unit component of
   ``v`` orthogonal to ``g_i`` (so ``g_i . v = 0`` afterwards), as in the authors' code.

Conventions and deviations, all documented in docs/methods.md:

* ``alpha = 0`` does **not** give EDM: the tension is then the constant 1 for every task.
  CDTT equals EDM exactly during the first ``window`` steps (no tension yet), and whenever all
  tensions vanish.
* the tension has absolute units (``tau_t`` times a unit vector) while ``d`` has the gradients'
  scale, as published; the tuned learning rate absorbs it.
* a task with ``g_t = d`` (e.g. all gradients identical) adds no tension (the published code
  divides by zero there); a step whose angle fix is undefined (``v`` anti-parallel to
  ``g_i``) keeps EDM's direction and is counted in ``degenerate_steps``.
* scale: every weight is multiplied by ``T`` (EW's sum scale), so ``T`` identical gradients
  ``g`` give ``T g``; ``last_weights`` are these effective weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from litmus.errors import ConfigError, MethodError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .edm import edm_convex_weights
from .registry import register

_TINY = 1e-12


def tension(p: np.ndarray, alpha: float) -> np.ndarray:
    """``max(0, alpha * sigmoid(e (p - 1)) + 1 - alpha)`` element-wise."""
    sig = 1.0 / (1.0 + np.exp(-math.e * (p - 1.0)))
    return np.maximum(0.0, alpha * sig + 1.0 - alpha)


def tensioned_weights(g: np.ndarray, c: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, bool]:
    """Weights of ``v = d + sum_t tau_t (g_t - d)/|g_t - d|`` after the angle fix; ``(w, degenerate)``.

    ``g`` is the Gramian, ``c`` the convex EDM weights (``d = sum c_t g_t``).
    """
    gc = g @ c
    dd = float(c @ gc)
    m2 = np.diag(g) - 2.0 * gc + dd
    m = np.sqrt(np.clip(m2, 0.0, None))
    scale = np.where(m > _TINY * (1.0 + np.sqrt(np.clip(np.diag(g), 0.0, None))), tau / np.maximum(m, _TINY), 0.0)
    w = c * (1.0 - scale.sum()) + scale
    for i in range(len(c)):
        gw = g @ w
        if gw[i] >= 0.0:
            continue
        ni = math.sqrt(g[i, i])
        vv = float(w @ gw)
        dot = gw[i] / ni  # v . u_i
        perp = math.sqrt(max(vv - dot * dot, 0.0))  # |v - (v . u_i) u_i|
        diff = math.sqrt(max(vv - 2.0 * gw[i] + g[i, i], 0.0))  # |v - g_i|
        if perp <= _TINY * (1.0 + math.sqrt(vv)) or diff <= _TINY:
            return c, True
        cos_theta = float(np.clip((gw[i] - g[i, i]) / (ni * diff), -1.0, 1.0))
        tan_a = math.tan(math.pi - math.acos(cos_theta))
        w = w * ni * tan_a / perp
        w[i] -= dot * tan_a / perp
    return w, False


@register
class CDTT(WeightedGradientMethod):
    name = "cdtt"
    paper = "Nakamura et al., arXiv 2204.06698 (central direction + task tensioners; as run by Gama & Grassi)"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("alpha", 0.6, low=0.2, high=1.0,
               help="weight of the convergence-driven sigmoid in the tension (1 - alpha is a constant tension)"),
        HParam("window", 10, kind="int", low=2, high=50, tunable=False,
               help="steps in the sliding window of gradient norms"),
    )

    def __init__(self, num_tasks: int, alpha: float = 0.6, window: int = 10) -> None:
        super().__init__(num_tasks)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"cdtt.alpha must be in [0, 1], got {alpha}")
        if window < 1:
            raise ConfigError(f"cdtt.window must be >= 1, got {window}")
        self.alpha, self.window = alpha, window
        self.norms = np.zeros((num_tasks, window))
        self.iterations = 0
        self.prev_sums: np.ndarray | None = None
        self.last_tension: np.ndarray | None = None
        self.degenerate_steps = 0
        self.zero_steps = 0

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        t = self.num_tasks
        host = torch.cat([gramian(jacobian).flatten(), losses.to(jacobian.dtype)]).double().cpu().numpy()
        g, l = host[: t * t].reshape(t, t), host[t * t:]
        c, norms = edm_convex_weights(g)
        if not c.any():
            self.zero_steps += 1
            return torch.zeros(t, dtype=torch.float64)
        self.norms[:, self.iterations % self.window] = norms
        self.iterations += 1
        w = c
        self.last_tension = None
        if self.iterations >= self.window:
            sums = self.norms.sum(axis=1)
            if self.prev_sums is not None:
                if not np.all(l > 0):
                    raise MethodError(f"cdtt needs positive losses (log10 of the loss), got {l.tolist()}")
                tau = tension(sums / self.prev_sums + np.log10(l), self.alpha)
                self.last_tension = tau
                w, degenerate = tensioned_weights(g, c, tau)
                self.degenerate_steps += int(degenerate)
            self.prev_sums = sums
        return torch.from_numpy(t * w)
