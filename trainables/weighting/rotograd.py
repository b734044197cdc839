"""RotoGrad: per-task rotations of the shared representation (Javaloy & Valera, ICLR 2022).

Task ``t``'s head sees ``r_t = R_t z`` instead of the shared representation ``z`` (feature axis:
the last one for ``[N, d]`` features, dim 1 for ``[N, C, H, W]`` maps), with ``R_t`` orthogonal,
parametrised as ``R_t = exp(A_t - A_t^T)`` (``A_t = 0`` at the start: identity). The trainer
applies :meth:`RotoGrad.transform_rep` before each task's head in training and evaluation.

Each step (``direction``, rep space): the Jacobian rows are ``g_t = R_t^T h_t`` with
``h_t = dL_t/dr_t``; the encoder gets the plain sum ``d = sum_t g_t`` (EW on the rotated
tasks), and the rotations take one Adam step on RotoGrad's alignment objective
``-sum_t cos(R_t^T h_t, d)`` (``h_t = R_t g_t`` held fixed), i.e. they turn each task's
gradient toward the common update, which reduces conflict. Their learning rate is
``lr_ratio`` times the trainer's learning rate (the trainer calls :meth:`set_base_lr`).

Deviations: the rotation part only (the paper's "scaling" step, GradNorm-like magnitude
homogenisation, is not applied: combine with a loss weighting if wanted); rotations span the
whole feature axis (the paper allows a sub-space); the matrix-exponential parametrisation
replaces the paper's geotorch orthogonal parametrisation (same manifold).
``last_weights`` are all ones (the encoder update is the plain sum of the rotated gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError, MethodError

from ._grad import check_inputs
from .base import GradientMethod, HParam
from .registry import register


@register
class RotoGrad(GradientMethod):
    name = "rotograd"
    paper = "Javaloy & Valera, ICLR 2022"
    spaces = ("rep",)
    default_space = "rep"
    transforms_rep = True
    hparams = (
        HParam("lr_ratio", 1.0, low=0.1, high=5.0, log=True, help="rotation learning rate / model learning rate"),
    )

    def __init__(self, num_tasks: int, lr_ratio: float = 1.0) -> None:
        super().__init__(num_tasks)
        if lr_ratio <= 0:
            raise ConfigError(f"rotograd.lr_ratio must be > 0, got {lr_ratio}")
        self.lr_ratio = lr_ratio
        self.base_lr = 1e-3
        self.generators: nn.Parameter | None = None  # [T, d, d], created on the first representation seen
        self._opt: torch.optim.Optimizer | None = None

    def set_base_lr(self, lr: float) -> None:
        """The trainer's learning rate; the rotations use ``lr_ratio`` times it."""
        self.base_lr = float(lr)
        if self._opt is not None:
            for g in self._opt.param_groups:
                g["lr"] = self.base_lr * self.lr_ratio

    def before_load_state(self, parameters: dict[str, Tensor | None], device: torch.device) -> None:
        """A checkpoint taken after the first step has rotations: create them (and their optimiser) to load into."""
        g = parameters.get("generators")
        if g is not None:
            self._ensure(g.shape[-1], torch.empty(0, device=device, dtype=g.dtype))

    def optimizer_params(self) -> list[nn.Parameter]:
        """The rotations are trained by RotoGrad's own optimiser in ``direction``."""
        return []

    @staticmethod
    def _axis(rep: Tensor) -> int:
        return 1 if rep.dim() == 4 else rep.dim() - 1

    def _ensure(self, d: int, like: Tensor) -> None:
        if self.generators is None:
            self.generators = nn.Parameter(torch.zeros(self.num_tasks, d, d, device=like.device, dtype=like.dtype))
            self._opt = torch.optim.Adam([self.generators], lr=self.base_lr * self.lr_ratio)
        elif self.generators.shape[-1] != d:
            raise MethodError(f"rotograd: representation width changed from {self.generators.shape[-1]} to {d}")

    def rotations(self) -> Tensor:
        """``[T, d, d]`` orthogonal matrices."""
        assert self.generators is not None
        a = self.generators
        return torch.linalg.matrix_exp(a - a.transpose(-1, -2))

    @staticmethod
    def _rotate(rep: Tensor, r: Tensor, axis: int) -> Tensor:
        return (rep.movedim(axis, -1) @ r.T).movedim(-1, axis)

    def transform_rep(self, rep: Tensor, task_index: int) -> Tensor:
        """Task ``task_index``'s view ``R_t z`` of the shared representation (differentiable in ``z``)."""
        axis = self._axis(rep)
        self._ensure(rep.shape[axis], rep)
        r = self.rotations()[task_index].detach().to(rep.dtype)
        return self._rotate(rep, r, axis)

    def direction(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        check_inputs(self.name, self.num_tasks, jacobian, losses)
        d = jacobian.sum(0)
        axis = self._axis(jacobian[0])
        self._ensure(jacobian.shape[1 + axis], jacobian)
        assert self._opt is not None and self.generators is not None
        with torch.enable_grad():
            rot = self.rotations()
            rows = []
            for t in range(self.num_tasks):
                h = self._rotate(jacobian[t].detach(), rot[t].detach(), axis)  # h_t = R_t g_t
                rows.append(self._rotate(h, rot[t].T, axis).flatten())  # R_t^T h_t, differentiable in R_t
            g = torch.stack(rows)
            target = d.detach().flatten()
            cos = (g @ target) / (g.norm(dim=1) * target.norm()).clamp_min(1e-12)
            loss = -cos.sum()
            self._opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[self.generators])
            self._opt.step()
        self.last_weights = torch.ones(self.num_tasks, device=jacobian.device, dtype=jacobian.dtype)
        return d.detach()
