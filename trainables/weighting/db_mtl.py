"""DB-MTL: dual-balancing multi-task learning (Lin et al., 'Dual-Balancing for Multi-Task Learning', arXiv 2308.12029, Algorithm 1).

Loss-scale balancing: the task gradients are those of ``log(L_t + 1e-8)``, i.e. ``g_t / (L_t + 1e-8)``.
Gradient-magnitude balancing: an EMA ``h_t <- b_k h_t + (1 - b_k) g_t / (L_t + 1e-8)`` with
``b_k = beta / k^beta_sigma`` (``h`` starts at 0, as in the authors' LibMTL code) and the
direction ``sum_t (max_s |h_s| / |h_t|) h_t``: every EMA gradient rescaled to the largest norm.

Scale (part of the method, kept): the direction has ``T`` terms of norm ``max_s |h_s|``; ``T``
identical gradients ``g`` with equal losses ``L`` give ``T (1 - beta^k) g / L`` at step ``k``
(``beta_sigma = 0``). The direction is built from past gradients, so it has no weights on the
current Jacobian: ``last_weights`` stays None. Space "param" only: an EMA of representation
gradients of different batches means nothing. Needs positive losses (checked on the device).
Heads: in litmus they get their raw-loss gradients (LibMTL trains them on the log losses).
"""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from ._grad import check_inputs
from .base import GradientMethod, HParam
from .registry import register

_EPS = 1e-8


@register
class DBMTL(GradientMethod):
    name = "db_mtl"
    paper = "Lin et al., arXiv 2308.12029, Algorithm 1"
    spaces = ("param",)
    default_space = "param"
    hparams = (
        HParam("beta", 0.9, low=0.5, high=0.99, help="EMA rate of the log-loss gradients"),
        HParam("beta_sigma", 0.0, low=0.0, high=1.0, tunable=False, help="decay exponent: b_k = beta / k^beta_sigma"),
    )

    def __init__(self, num_tasks: int, beta: float = 0.9, beta_sigma: float = 0.0) -> None:
        super().__init__(num_tasks)
        if not 0.0 <= beta < 1.0 or beta_sigma < 0:
            raise ConfigError(f"db_mtl needs 0 <= beta < 1 and beta_sigma >= 0, got beta={beta}, beta_sigma={beta_sigma}")
        self.beta, self.beta_sigma = beta, beta_sigma
        self.steps = 0
        self.register_buffer("grad_ema", None)

    def direction(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        check_inputs(self.name, self.num_tasks, jacobian, losses)
        with torch.no_grad():
            l = losses.detach().to(device=jacobian.device, dtype=jacobian.dtype)
            torch._assert_async(torch.all(l > 0), "db_mtl needs positive losses (it balances log losses)")
            g = jacobian.detach().flatten(1) / (l + _EPS).unsqueeze(1)
            self.steps += 1
            b = self.beta / self.steps**self.beta_sigma
            if self.grad_ema is None or self.grad_ema.shape != g.shape:
                self.grad_ema = torch.zeros_like(g)
            self.grad_ema = g + b * (self.grad_ema.to(g) - g)
            norms = self.grad_ema.norm(dim=1)
            scale = norms.max() / (norms + _EPS)
            self.last_weights = None
            return (scale @ self.grad_ema).reshape(jacobian.shape[1:])
