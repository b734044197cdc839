"""Shared part of the bi-level loss weightings (MOML, Auto-Lambda); not a method.

:class:`BilevelWeighting` keeps task logits ``beta`` and, when the trainer calls :meth:`meta_step`
(``needs_meta = True``), computes for every task ``t`` the hypergradient ``d L_t^meta(theta') / d beta``
of the meta loss after ONE virtual SGD step ``theta' = theta - inner_lr * grad_theta sum_s w_s L_s^train``
(exact second order, ``torch.func.functional_call``). Subclasses map the ``[T, T]`` hypergradients to
one update of ``beta`` (Adam, learning rate ``outer_lr``). The meta batch comes from a held-out part of
the TRAINING split carved by the trainer (``meta_fraction``), never from validation or test data.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from .base import HParam, LossFn, LossWeighting

class BilevelWeighting(LossWeighting):
    needs_meta: ClassVar[bool] = True
    hparams = (
        HParam("outer_lr", 1e-3, low=1e-4, high=1e-2, log=True, help="learning rate of the task weights (upper level)"),
        HParam("inner_lr", 0.1, low=1e-3, high=1.0, log=True, tunable=False, help="step of the virtual lower-level update"),
        HParam("meta_fraction", 0.1, low=0.02, high=0.5, tunable=False,
               help="fraction of the training split held out as meta data (the model never trains on it)"),
    )

    def __init__(self, num_tasks: int, outer_lr: float = 1e-3, inner_lr: float = 0.1, meta_fraction: float = 0.1) -> None:
        super().__init__(num_tasks)
        if outer_lr <= 0 or inner_lr <= 0 or not 0 < meta_fraction < 1:
            raise ConfigError(f"{self.name} needs outer_lr > 0, inner_lr > 0 and 0 < meta_fraction < 1, "
                              f"got {outer_lr}, {inner_lr}, {meta_fraction}")
        self.outer_lr, self.inner_lr, self.meta_fraction = outer_lr, inner_lr, meta_fraction
        self.beta = nn.Parameter(torch.zeros(num_tasks))
        self._opt = torch.optim.Adam([self.beta], lr=outer_lr)
        self.meta_steps = 0
        self.last_meta_losses: Tensor | None = None

    def optimizer_params(self) -> list[nn.Parameter]:
        """The task weights are trained by the method's own upper-level optimiser in ``meta_step``."""
        return []

    def task_weights(self) -> Tensor:  # pragma: no cover - abstract
        """Weights as a differentiable function of ``beta`` (EW scale)."""
        raise NotImplementedError

    def weights(self, losses: Tensor) -> Tensor:
        return self.task_weights().detach().to(losses.device, losses.dtype)

    def combine(self, hypergrads: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``[T, T]`` rows ``d L_t^meta / d beta`` -> the gradient applied to ``beta``."""
        raise NotImplementedError

    def meta_step(self, loss_fn: LossFn, params: dict[str, Tensor], train_batch: object, meta_batch: object) -> None:
        """One upper-level update of the weights from a one-step lookahead of the model."""
        with torch.enable_grad():
            w = self.task_weights()
            names = list(params)
            theta = [params[n].detach().requires_grad_(True) for n in names]
            train_losses = loss_fn(dict(zip(names, theta)), train_batch)
            grads = torch.autograd.grad((w.to(train_losses.device) * train_losses).sum(), theta, create_graph=True,
                                        allow_unused=True)
            lookahead = {n: p - self.inner_lr * g if g is not None else p for n, p, g in zip(names, theta, grads)}
            meta_losses = loss_fn(lookahead, meta_batch)
            rows = []
            for t in range(self.num_tasks):
                (g,) = torch.autograd.grad(meta_losses[t], self.beta, retain_graph=t < self.num_tasks - 1,
                                           allow_unused=True)
                rows.append(g if g is not None else torch.zeros_like(self.beta))
            hyper = torch.stack(rows)
        self._opt.zero_grad(set_to_none=True)
        self.beta.grad = self.combine(hyper.detach())
        self._opt.step()
        self.meta_steps += 1
        self.last_meta_losses = meta_losses.detach()
