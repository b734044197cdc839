"""MGDA: min-norm point of the convex hull of the task gradients (Sener & Koltun, NeurIPS 2018, Eq. 3 / Algorithm 2).

Weights ``alpha = argmin_{alpha in simplex} |sum_t alpha_t g~_t|^2`` with the gradients first
normalised as in Sener & Koltun's code: ``none``; ``l2``: ``g_t / |g_t|``; ``loss``: ``g_t / L_t``;
``loss+`` (default): ``g_t / (L_t |g_t|)``. The direction is the min-norm point of the hull of
the *normalised* gradients (as in LibMTL; Sener & Koltun's script instead applies ``alpha`` to the
raw losses), multiplied by ``T``: the effective weights on the raw task gradients are
``T * alpha_t / n_t`` (``n_t`` the normaliser), which is what ``last_weights`` holds.

Scale: ``T`` identical gradients ``g`` (equal losses ``L``) give ``T * g / n``, i.e. ``T * g``
with ``none``, ``T g/|g|`` with ``l2``, ``T g/L`` with ``loss`` and ``T g/(L |g|)`` with ``loss+``.

Solver (:func:`min_norm_simplex`): on the ``T x T`` Gramian in float64, one device->host copy of
``T^2 + T`` numbers per step. ``T = 2`` in closed form (the minimum of a quadratic in one variable,
clipped to ``[0, 1]``, as Sener & Koltun's ``_min_norm_element_from2``); otherwise the QP is
solved exactly (Goldfarb-Idnani dual active-set method, ``quadprog``) on the trace-normalised
Gramian. torchjd's
``MGDA`` (Frank-Wolfe, stops on the step size) was measured 0.8-4 % above the true minimum norm
on random 2-8 task problems, so it is not used. ``loss`` normalisations need positive losses.
"""

from __future__ import annotations

import numpy as np
import quadprog
import torch
from torch import Tensor

from litmus.errors import ConfigError, MethodError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register

NORMALIZATIONS = ("none", "l2", "loss", "loss+")
_TINY = 1e-12


def min_norm_simplex(g: np.ndarray) -> np.ndarray:
    """``argmin_{a >= 0, sum a = 1} a^T g a`` for a PSD ``g`` (float64, ``[T, T]``)."""
    t = g.shape[0]
    trace = float(np.trace(g))
    if t == 1 or trace <= 0.0:
        return np.full(t, 1.0 / t)
    if t == 2:
        return _min_norm_two(g)
    p = g / trace
    p = 0.5 * (p + p.T)
    # quadprog needs strict convexity: lift the smallest eigenvalue (which roundoff can make
    # slightly negative for (nearly) linearly dependent gradients) to 1e-9 of the trace
    lift = 1e-9 - float(np.linalg.eigvalsh(p)[0])
    if lift > 0:
        p = p + lift * np.eye(t)
    c = np.concatenate([np.ones((t, 1)), np.eye(t)], axis=1)
    b = np.concatenate([[1.0], np.zeros(t)])
    alpha = quadprog.solve_qp(p, np.zeros(t), c, b, 1)[0]
    alpha = np.clip(alpha, 0.0, None)
    return alpha / alpha.sum()


def _min_norm_two(g: np.ndarray) -> np.ndarray:
    """``a g_1 + (1 - a) g_2`` of least norm: ``a = (G22 - G12) / |g_1 - g_2|^2`` clipped to ``[0, 1]``."""
    cross = 0.5 * (g[0, 1] + g[1, 0])
    denom = g[0, 0] + g[1, 1] - 2.0 * cross
    if denom <= 1e-12 * (g[0, 0] + g[1, 1]):  # (nearly) equal gradients: every point of the hull is the same
        return np.array([0.5, 0.5])
    a = min(max((g[1, 1] - cross) / denom, 0.0), 1.0)
    return np.array([a, 1.0 - a])


def normalizers(kind: str, sq_norms: np.ndarray, losses: np.ndarray, method: str) -> np.ndarray:
    """Sener & Koltun's gradient normalisers ``n_t`` (gradients are divided by them)."""
    norms = np.sqrt(np.clip(sq_norms, 0.0, None))
    if kind in ("loss", "loss+") and not np.all(losses > 0):
        raise MethodError(f"{method}: normalization {kind!r} needs positive losses, got {losses.tolist()}")
    if kind == "none":
        return np.ones_like(norms)
    if kind == "l2":
        return np.maximum(norms, _TINY)
    if kind == "loss":
        return losses
    return np.maximum(losses * norms, _TINY)


@register
class MGDA(WeightedGradientMethod):
    name = "mgda"
    paper = "Sener & Koltun, NeurIPS 2018, Algorithm 2 (min-norm solver, Eq. 3)"
    spaces = ("param",)
    default_space = "param"
    hparams = (
        HParam("normalization", "loss+", kind="categorical", choices=NORMALIZATIONS,
               help="gradient normalisation before the min-norm solve (Sener & Koltun's code)"),
    )

    def __init__(self, num_tasks: int, normalization: str = "loss+") -> None:
        super().__init__(num_tasks)
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"{self.name}.normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        t = self.num_tasks
        host = torch.cat([gramian(jacobian).flatten(), losses.to(jacobian.dtype)]).double().cpu().numpy()
        g, l = host[: t * t].reshape(t, t), host[t * t:]
        n = normalizers(self.normalization, np.diag(g).copy(), l, self.name)
        alpha = min_norm_simplex(g / np.outer(n, n))
        return torch.from_numpy(t * alpha / n).to(device=jacobian.device, dtype=jacobian.dtype)
