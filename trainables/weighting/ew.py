"""Equal Weighting: the plain sum of task losses (all weights 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting
from .registry import register


@register
class EW(LossWeighting):
    name = "ew"
    paper = "Equal weighting baseline (Lin et al., 'Reasonable Effectiveness of Random Weighting', Eq. 1)"
    always_ones = True

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)
