"""GradNorm (Chen et al., ICML 2018, Eq. 1-2 and Sec. 3.2).

Learnable task weights ``w`` (initialised to 1). Each step the direction is ``sum_t w_t J_t``
with the current weights, then the weights take one step of their own Adam optimiser
(learning rate ``lr``) on ``L_grad = sum_t |w_t |g_t| - mean_s(w_s |g_s|) * r_t^alpha|``, where
``r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0))`` is the relative inverse training rate and the
target is a constant (paper, Sec. 3.2); the initial losses ``L_t(0)`` are those of the first call.
After the step the weights are renormalised to sum ``T`` (kept above ``1e-4 * T`` so they stay
positive; the paper only renormalises).

``|g_t|`` is the norm of the task's row of the Jacobian: the representation gradient in "rep"
space (default, the cheap stand-in for the paper's "last shared layer"), all shared parameters in
"param" space. Scale: the weights sum to ``T`` (EW's scale), so ``T`` identical gradients ``g``
with equal losses give ``T * g`` (the weights stay at 1). The weights have their own optimiser:
``optimizer_params()`` is empty so the trainer does not add them to the model's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod
from .base import HParam
from .registry import register

_MIN_WEIGHT = 1e-4


@register
class GradNorm(WeightedGradientMethod):
    name = "gradnorm"
    paper = "Chen et al., ICML 2018, Eq. 2"
    spaces = ("rep", "param")
    default_space = "rep"
    hparams = (
        HParam("alpha", 1.5, low=0.25, high=2.0, help="strength of the restoring force"),
        HParam("lr", 0.025, low=1e-4, high=0.1, log=True, help="Adam learning rate of the task weights"),
    )

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if alpha < 0 or lr <= 0:
            raise ConfigError(f"gradnorm needs alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha, self.lr = alpha, lr
        self.task_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.ones(num_tasks))
        self._have_initial = False
        self._opt = torch.optim.Adam([self.task_weights], lr=lr)

    def optimizer_params(self) -> list[nn.Parameter]:
        """GradNorm trains its weights itself: nothing for the trainer's optimiser."""
        return []

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        p = self.task_weights
        if not self._have_initial:
            self.initial_losses = losses.detach().to(p.device, p.dtype).clone()
            self._have_initial = True
        used = p.detach().clone()
        norms = jacobian.flatten(1).norm(dim=1).to(p.device, p.dtype)
        ratio = losses.to(p.device, p.dtype) / self.initial_losses
        r = ratio / ratio.mean()
        weighted = used * norms
        target = weighted.mean() * r.pow(self.alpha)
        # d L_grad / d w_t with the target held constant (paper, Sec. 3.2)
        self._opt.zero_grad(set_to_none=True)
        p.grad = torch.sign(weighted - target) * norms
        self._opt.step()
        with torch.no_grad():
            w = p.clamp_min(_MIN_WEIGHT)
            p.copy_(self.num_tasks * w / w.sum())
        return used
