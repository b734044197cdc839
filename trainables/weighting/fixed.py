"""Fixed static weights given by the user, normalised to sum to ``T``."""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from .base import HParam, LossWeighting
from .registry import register


@register
class Fixed(LossWeighting):
    name = "fixed"
    paper = "Static weights; EMA-extracted from an optimiser's weights in Gama & Grassi (Uniform Loss vs. SMTOs)"
    hparams = (
        HParam("task_weights", None, kind="categorical", tunable=False,
               help="list of T non-negative weights (normalised to sum T); default: all equal"),
    )

    def __init__(self, num_tasks: int, task_weights: list[float] | None = None) -> None:
        super().__init__(num_tasks)
        if task_weights is None:
            w = torch.ones(num_tasks)
        else:
            if not isinstance(task_weights, (list, tuple)) or len(task_weights) != num_tasks:
                raise ConfigError(f"fixed.task_weights must be a list of {num_tasks} numbers, got {task_weights!r}")
            w = torch.tensor([float(x) for x in task_weights])
            if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ConfigError(f"fixed.task_weights must be finite, non-negative and not all zero, got {task_weights!r}")
        self.task_weights = task_weights
        self.register_buffer("_w", w * num_tasks / w.sum())

    def weights(self, losses: Tensor) -> Tensor:
        return self._w.to(losses.device, losses.dtype)
