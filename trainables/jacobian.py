"""Vector-Jacobian products of a few stacked outputs: the task gradients of the shared part.

``vjp_rows(outputs, inputs, rows)`` returns, per input ``p``, ``[T, *p.shape]`` with row ``i``
the gradient of ``rows[i] . outputs`` w.r.t. ``p`` (the Jacobian of a ``[T]`` output when
``rows`` is the identity). :class:`Jacobian` computes them in one batched backward pass
(``is_grads_batched``, torch.func's vmap over the backward graph) and falls back to one pass per
row when an operation has no batching rule.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def batched(outputs: Tensor, inputs: list[Tensor], rows: Tensor) -> list[Tensor]:
    """All rows in one backward pass (``is_grads_batched``); raises ``RuntimeError`` without a batching rule."""
    t = rows.shape[0]
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=rows, is_grads_batched=True,
                                retain_graph=True, allow_unused=True)
    return [g if g is not None else torch.zeros(t, *p.shape, device=p.device, dtype=p.dtype)
            for g, p in zip(grads, inputs)]


def looped(outputs: Tensor, inputs: list[Tensor], rows: Tensor) -> list[Tensor]:
    """One backward pass per row (``retain_graph``)."""
    per_row = [torch.autograd.grad(outputs, inputs, grad_outputs=rows[i], retain_graph=True, allow_unused=True)
               for i in range(rows.shape[0])]
    return [torch.stack([r[j] if r[j] is not None else torch.zeros_like(p) for r in per_row])
            for j, p in enumerate(inputs)]


class Jacobian:
    """Task gradients by the batched pass, or by one pass per row once the batched one failed."""

    def __init__(self) -> None:
        self.vmap_ok = True

    def __call__(self, outputs: Tensor, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor]:
        if rows is None:
            rows = torch.eye(outputs.shape[0], device=outputs.device, dtype=outputs.dtype)
        if self.vmap_ok:
            try:
                return batched(outputs, inputs, rows)
            except RuntimeError as err:  # an op without a batching rule
                warnings.warn(f"batched Jacobian unavailable ({err}); using one backward pass per task", stacklevel=3)
                self.vmap_ok = False
        return looped(outputs, inputs, rows)
