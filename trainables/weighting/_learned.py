"""Shared part of the loss weightings with learned per-task log-parameters (UW, IMTL-L); not a method.

Each such method keeps one parameter per task, 0 at the start, that the trainer's optimiser trains
together with the model through the method's :meth:`~LossWeighting.regularizer`, in its own parameter
group with learning rate ``lr`` (0.025 in the Nash-MTL/FAMO code). Subclasses create the parameter
under their own name (UW's ``log_var``, IMTL-L's ``log_scale``) and map it to weights.
"""

from __future__ import annotations

from litmus.errors import ConfigError

from .base import HParam, LossWeighting


class LearnedLogWeighting(LossWeighting):
    hparams = (HParam("lr", 0.025, low=1e-4, high=0.1, log=True,
                      help="learning rate of the per-task log-parameters (their own optimiser group)"),)

    def __init__(self, num_tasks: int, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if lr <= 0:
            raise ConfigError(f"{self.name}.lr must be > 0, got {lr}")
        self.lr = lr
