"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023, Algorithm 1).

Task logits ``xi`` give ``z = softmax(xi)``; the model minimises
``sum_t z_t log(L_t - m_t + eps) / c`` with ``c = sum_t z_t / (L_t - m_t + eps)``,
whose effective weights on the raw losses are ``z_t / (c (L_t - m_t + eps))``
(they sum to 1; litmus multiplies by ``T``, EW's scale). After the model
update FAMO's extra step recomputes the losses on the same batch and moves
``xi`` along the decrease of the log losses (``after_step``), with Adam
(learning rate ``lr``) and weight decay ``gamma``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from .base import HParam, LossWeighting
from .registry import register

_EPS = 1e-8


@register
class FAMO(LossWeighting):
    name = "famo"
    paper = "Liu et al., NeurIPS 2023"
    needs_after_step = True
    hparams = (
        HParam("gamma", 1e-3, low=1e-4, high=1e-2, log=True, help="weight decay of the task logits"),
        HParam("lr", 0.025, low=1e-3, high=0.1, log=True, help="learning rate of the task logits"),
    )

    def __init__(self, num_tasks: int, gamma: float = 1e-3, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if gamma < 0 or lr <= 0:
            raise ConfigError(f"famo needs gamma >= 0 and lr > 0, got gamma={gamma}, lr={lr}")
        self.gamma, self.lr = gamma, lr
        self.logits = nn.Parameter(torch.zeros(num_tasks))
        self.register_buffer("min_losses", torch.zeros(num_tasks))
        self._opt = torch.optim.Adam([self.logits], lr=lr, weight_decay=gamma)
        self._prev: Tensor | None = None

    def _shifted(self, losses: Tensor) -> Tensor:
        return losses.detach() - self.min_losses.to(losses.device) + _EPS

    def weights(self, losses: Tensor) -> Tensor:
        d = self._shifted(losses)
        z = torch.softmax(self.logits.detach().to(d.device), dim=0)
        c = (z / d).sum()
        self._prev = losses.detach().clone()
        return (self.num_tasks * z / (c * d)).to(losses.dtype)

    def optimizer_params(self) -> list[nn.Parameter]:
        """FAMO trains its logits itself in ``after_step``."""
        return []

    def after_step(self, new_losses: Tensor) -> None:
        if self._prev is None:
            raise RuntimeError("famo.after_step called before weights()")
        delta = torch.log(self._shifted(self._prev)) - torch.log(self._shifted(new_losses))
        with torch.enable_grad():
            logits = self.logits
            (grad,) = torch.autograd.grad(torch.softmax(logits, dim=0), logits, grad_outputs=delta.to(logits.device))
        self._opt.zero_grad(set_to_none=True)
        self.logits.grad = grad
        self._opt.step()
        self._prev = None
