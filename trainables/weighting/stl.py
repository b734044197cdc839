"""STL: single-task learning baseline (one model per task inside one trial), for Delta-m against STL.

``method: stl`` is equal weighting on the ``stl`` architecture (``trainables/architectures/stl.py``:
``T`` independent encoder + head models, nothing shared). The method flag ``single_task`` makes
the config resolve ``arch: hps`` (the default) to ``stl``; any other architecture, a gradient
method (``stl+GRAD``: nothing is shared to balance) or ``grad_clip`` (a global norm couples the
tasks) is refused. With disjoint parameters the gradient of ``sum_t L_t`` w.r.t. task ``t``'s
model is exactly ``grad L_t``, so the ``T`` models train as ``T`` single-task runs with the same
seed, batches and optimiser settings.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .base import LossWeighting
from .registry import register


@register
class STL(LossWeighting):
    name = "stl"
    paper = "single-task learning baseline (one model per task; Delta-m vs STL as in Navon et al., ICML 2022)"
    #: the trainer must build one independent model per task (architecture ``stl``)
    single_task: ClassVar[bool] = True

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)
