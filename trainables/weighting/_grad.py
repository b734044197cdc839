"""Shared plumbing of the gradient methods (not a method: the package skips ``_`` modules).

* :func:`check_inputs`: shape checks of the ``direction`` contract (cheap, no device sync).
* :func:`combine`: ``sum_t w_t J_t`` for a Jacobian of any shape ``[T, *S]`` -> ``[*S]``.
* :func:`gramian`: ``J J^T`` of the flattened Jacobian, ``[T, T]``.
* :class:`WeightedGradientMethod`: methods whose direction is a linear combination of the task
  gradients; subclasses compute the *effective* weights ``[T]`` (already on litmus's scale),
  the base applies them and records them in ``last_weights``.
* :func:`seeded_global_rng`: run third-party code that draws from torch's *global* CPU RNG
  (torchjd's PCGrad / GradVac use ``torch.randperm`` without a generator) with a seed drawn from
  the method's own generator, restoring the global RNG afterwards. Same method seed -> same
  directions, and the data order / dropout RNG is left untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from litmus.errors import MethodError

from .base import GradientMethod


def check_inputs(name: str, num_tasks: int, jacobian: Tensor, losses: Tensor) -> None:
    """Raise ``ValueError`` when ``jacobian`` / ``losses`` do not follow the contract."""
    if jacobian.dim() < 2:
        raise MethodError(f"{name}: jacobian must be [T, ...] with at least 2 dims, got shape {tuple(jacobian.shape)}")
    if jacobian.shape[0] != num_tasks:
        raise MethodError(f"{name}: jacobian has {jacobian.shape[0]} rows for {num_tasks} tasks")
    if losses.shape != (num_tasks,):
        raise MethodError(f"{name}: losses must have shape ({num_tasks},), got {tuple(losses.shape)}")


def combine(weights: Tensor, jacobian: Tensor) -> Tensor:
    """``sum_t weights[t] * jacobian[t]``, shape ``jacobian.shape[1:]``."""
    return torch.tensordot(weights.to(device=jacobian.device, dtype=jacobian.dtype), jacobian, dims=1)


def gramian(jacobian: Tensor) -> Tensor:
    """Gramian ``G = J J^T`` of the flattened Jacobian (``[T, T]``)."""
    m = jacobian.flatten(1)
    return m @ m.T


def draw_seed(generator: torch.Generator) -> int:
    """A 62-bit seed drawn from ``generator`` (a CPU generator: no device sync)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


@contextmanager
def seeded_global_rng(generator: torch.Generator) -> Iterator[None]:
    """Seed torch's global CPU RNG from ``generator`` inside the block, restore it afterwards.

    Only the CPU generator is touched (``torch.default_generator``), never the CUDA ones.
    """
    seed = draw_seed(generator)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def make_generator(generator: torch.Generator | None, seed: int) -> torch.Generator:
    """The given generator, or a fresh CPU one seeded with ``seed`` (direct construction)."""
    return generator if generator is not None else torch.Generator().manual_seed(int(seed))


class WeightedGradientMethod(GradientMethod):
    """Direction ``sum_t w_t J_t`` with effective weights ``w`` from :meth:`weights`.

    ``weights`` gets the Jacobian and the (detached) losses and returns ``[T]`` weights on
    litmus's scale (EW = all ones); they are the true factors in front of each task gradient,
    so they are what ``last_weights`` reports. Errors raised by a solver inside ``weights`` are
    re-raised as ``RuntimeError`` naming the method and the step (never swallowed).
    """

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None) -> None:
        super().__init__(num_tasks, generator)
        self.steps = 0

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def direction(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        check_inputs(self.name, self.num_tasks, jacobian, losses)
        step = self.steps
        self.steps += 1
        with torch.no_grad():
            try:
                w = self.weights(jacobian.detach(), losses.detach())
            except RuntimeError:
                raise
            except Exception as e:  # a solver's own error type: re-raise with context, never swallow
                raise RuntimeError(f"{self.name}: solver failed at step {step}: {type(e).__name__}: {e}") from e
            w = w.to(device=jacobian.device, dtype=jacobian.dtype)
            self.last_weights = w
            return combine(w, jacobian.detach())
