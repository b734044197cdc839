"""Geometric Loss Strategy (Chennupati et al., CVPR-W 2019): minimise the geometric mean of the losses.

The gradient of ``G = (prod_t L_t)^(1/T)`` is ``sum_t G / (T L_t) grad L_t``;
litmus minimises ``T * G`` so that the effective weights ``G / L_t`` are EW's
(all 1) when the losses are equal. Those effective weights are what is logged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting
from .registry import register


@register
class GLS(LossWeighting):
    name = "gls"
    paper = "Chennupati et al., CVPR Workshops 2019"

    def weights(self, losses: Tensor) -> Tensor:
        safe = losses.detach().clamp_min(1e-12)
        geo = torch.exp(torch.log(safe).mean())
        return geo / safe
