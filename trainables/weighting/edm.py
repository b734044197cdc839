"""EDM: equal-angle descent direction (Katrutsa, Merkulov, Tursynbek & Oseledets, arXiv 2007.06937).

With unit task gradients ``u_t = g_t / |g_t|``, EDM takes ``alpha``, the min-norm point of the
convex hull of the ``u_t`` (the MGDA solve on unit vectors). By the optimality conditions of
that QP, ``p = sum_t alpha_t u_t`` has the same inner product ``|p|^2`` with every ``u_t``
with ``alpha_t > 0``, i.e. it makes equal angles with those unit gradients (the bisector;
tasks with ``alpha_t = 0`` are at a smaller angle). The direction is ``p`` rescaled by
``gamma = 1 / sum_t alpha_t / |g_t|``, which makes it a convex combination of the *raw*
gradients with weights ``gamma alpha_t / |g_t|`` (summing to 1), as in the code of the
retuned comparison (Gama & Grassi) and the task-tensioner paper.

Scale: litmus multiplies those convex weights by ``T`` (EW's sum scale), so ``T`` identical
gradients ``g`` give ``T g``. ``last_weights`` are these effective weights. A zero task
gradient leaves no equal-angle direction: the shared part then gets a zero direction (the
official code's choice), counted in ``zero_steps``. The QP is solved exactly (quadprog, the
same solver as ``mgda``) on the ``T x T`` Gramian.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._grad import WeightedGradientMethod, gramian
from .mgda import min_norm_simplex
from .registry import register

_TINY = 1e-12


def edm_convex_weights(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EDM's convex weights on the raw gradients from the Gramian ``g`` (float64 ``[T, T]``).

    Returns ``(weights, norms)``; ``weights`` sum to 1, or are all zero if a gradient is zero.
    """
    norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
    if np.any(norms <= _TINY):
        return np.zeros_like(norms), norms
    alpha = min_norm_simplex(g / np.outer(norms, norms))
    c = alpha / norms
    return c / c.sum(), norms


@register
class EDM(WeightedGradientMethod):
    name = "edm"
    paper = "Katrutsa et al., arXiv 2007.06937 (as run by Gama & Grassi)"
    spaces = ("param", "rep")
    default_space = "param"

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.zero_steps = 0

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        g = gramian(jacobian).double().cpu().numpy()
        w, _ = edm_convex_weights(g)
        if not w.any():
            self.zero_steps += 1
        return torch.from_numpy(self.num_tasks * w)
