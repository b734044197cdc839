"""MOML: multi-objective meta learning for MTL (Ye, Lin, Zhang, Zhang & Kwok, NeurIPS 2021, Sec. 4-5).

Lower level: the model trains on ``sum_t w_t L_t`` with ``w = T * softmax(beta)`` (EW at the
start, sum ``T``). Upper level: the meta losses of all tasks are a *multi-objective* problem:
each step takes one virtual SGD step of the model on the training batch
(``theta' = theta - inner_lr grad sum_t w_t L_t``), computes every task's hypergradient
``d L_t(theta', meta batch) / d beta`` and moves ``beta`` along their min-norm convex
combination (MGDA's common descent direction, as in MOML's gradient-based upper-level solver),
with Adam at ``outer_lr``. The meta batch comes from a held-out part of the training split
(``meta_fraction``, carved by the trainer), never from validation or test data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._bilevel import BilevelWeighting
from .mgda import min_norm_simplex
from .registry import register


@register
class MOML(BilevelWeighting):
    name = "moml"
    paper = "Ye et al., NeurIPS 2021 (MOML)"

    def task_weights(self) -> Tensor:
        return self.num_tasks * torch.softmax(self.beta, dim=0)

    def combine(self, hypergrads: Tensor) -> Tensor:
        h = hypergrads.double().cpu()
        g = (h @ h.T).numpy()
        # hypergradients w.r.t. softmax logits are orthogonal to the ones vector: G is singular, add a ridge
        g = g + 1e-6 * max(float(np.trace(g)), 1e-30) * np.eye(len(g))
        alpha = torch.from_numpy(min_norm_simplex(g)).to(hypergrads.dtype)
        return self.num_tasks * (alpha @ hypergrads)
