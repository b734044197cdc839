"""GradDrop: gradient sign dropout on the shared representation (Chen et al., NeurIPS 2020, Algorithm 1).

With the representation Jacobian ``J`` (``[T, batch, ...]``): ``G_t = sum_batch sign(A) * J_t``,
``P = (1 + sum_t G_t / sum_t |G_t|) / 2`` per feature, ``U ~ U(0, 1)`` per feature (from the
method's seeded generator), mask ``M_t = [P > U][G_t > 0] + [P < U][G_t < 0]`` broadcast over the
batch, direction ``sum_t (leak + (1 - leak) M_t) * J_t``.

``sign(A)`` needs the representation's values, which the ``direction`` contract does not pass:
the trainer passes it through the :meth:`GradDrop.observe_rep` hook (it sets ``method.activation``,
the detached representation) before the call; when it is None the sign is taken as +1 (exact for post-ReLU representations except at exact zeros).
torchjd's ``GradDrop`` is not used: it has no batch sum, no ``sign(A)``, and draws ``U`` from the
global RNG. Scale: a masked sum, like EW; ``T`` identical gradients are all kept (``T * g``).
No per-task weights exist (the masks are per element): ``last_weights`` stays None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from litmus.errors import ConfigError

from ._grad import check_inputs, draw_seed, make_generator
from .base import GradientMethod, HParam
from .registry import register


@register
class GradDrop(GradientMethod):
    name = "graddrop"
    paper = "Chen et al., NeurIPS 2020, Algorithm 1"
    draws_random = True
    spaces = ("rep",)
    default_space = "rep"
    hparams = (
        HParam("leak", 0.0, low=0.0, high=1.0, tunable=False, help="fraction of each task gradient that is never dropped"),
        HParam("seed", 0, kind="int", tunable=False, help="seed of U when no generator is given"),
    )

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None, leak: float = 0.0, seed: int = 0) -> None:
        super().__init__(num_tasks, make_generator(generator, seed))
        if not 0.0 <= leak <= 1.0:
            raise ConfigError(f"graddrop.leak must be in [0, 1], got {leak}")
        self.leak, self.seed = leak, seed
        self.activation: Tensor | None = None
        self._device_generators: dict[torch.device, torch.Generator] = {}

    def observe_rep(self, rep: Tensor) -> None:
        """Keep the step's (detached) representation: its sign is ``sign(A)`` in Algorithm 1."""
        self.activation = rep.detach()

    def _generator_for(self, device: torch.device) -> torch.Generator:
        assert self.generator is not None
        if device.type == "cpu":
            return self.generator
        if device not in self._device_generators:  # one per device, seeded from the method's generator
            self._device_generators[device] = torch.Generator(device=device).manual_seed(draw_seed(self.generator))
        return self._device_generators[device]

    def direction(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        check_inputs(self.name, self.num_tasks, jacobian, losses)
        j = jacobian.detach()
        signed = j if self.activation is None else j * torch.sign(self.activation.detach()).to(j.dtype)
        g = signed.sum(dim=1)  # [T, *features]: batch summed
        purity = 0.5 * (1.0 + g.sum(0) / (g.abs().sum(0) + 1e-7))
        u = torch.rand(purity.shape, generator=self._generator_for(j.device), device=j.device, dtype=j.dtype)
        keep = ((purity > u) & (g > 0)) | ((purity < u) & (g < 0))
        mask = self.leak + (1.0 - self.leak) * keep.to(j.dtype)
        self.last_weights = None
        return (j * mask.unsqueeze(1)).sum(0)
