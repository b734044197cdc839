"""SI: scale-invariant loss, the sum of log losses (as in Navon et al., ICML 2022, Nash-MTL's baselines).

The objective ``sum_t log L_t`` is invariant to a rescaling of any task's
loss; its gradient is ``sum_t grad L_t / L_t``, so the effective weights on
the raw losses are ``1 / L_t`` (what this method returns and logs). Each log
loss has weight 1 (EW's scale on the log losses). Losses must be positive.
"""

from __future__ import annotations

from torch import Tensor

from litmus.errors import MethodError

from .base import LossWeighting
from .registry import register


@register
class SI(LossWeighting):
    name = "si"
    paper = "scale-invariant sum of log losses (Navon et al., ICML 2022 baselines; Gama & Grassi)"

    def weights(self, losses: Tensor) -> Tensor:
        d = losses.detach()
        if not bool((d > 0).all()):
            raise MethodError(f"si needs positive losses (log of the loss), got {d.tolist()}")
        return 1.0 / d
