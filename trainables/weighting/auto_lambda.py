"""Auto-Lambda: meta-learned task weights (Liu, James, Davison & Johns, TMLR 2022, Eq. 2-3).

Task weights ``lambda = 1 + beta`` (``beta = 0`` at the start: EW) are updated to minimise the
meta loss ``sum_t L_t(theta', meta batch)`` of every task (the paper's multi-task setting: all
tasks primary) after one virtual SGD step ``theta' = theta - inner_lr grad sum_t lambda_t L_t``
on the training batch. The hypergradient is exact (second order through ``functional_call``;
the paper approximates it by finite differences), the meta batch comes from a held-out part of
the training split (``meta_fraction``, carved by the trainer), never from validation or test.
Weights are clipped at 0 (non-negative, as the paper requires) when used; Adam with
``outer_lr`` (1e-3; the paper's 1e-4 on NYUv2) updates ``beta`` every step.
"""

from __future__ import annotations

from torch import Tensor

from ._bilevel import BilevelWeighting
from .registry import register


@register
class AutoLambda(BilevelWeighting):
    name = "auto_lambda"
    paper = "Liu et al., TMLR 2022 (Auto-Lambda)"

    def task_weights(self) -> Tensor:
        return (1.0 + self.beta).clamp_min(0.0)

    def combine(self, hypergrads: Tensor) -> Tensor:
        return hypergrads.sum(0)
