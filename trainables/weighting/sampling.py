"""Random weight distributions of the random-weighting paper (Lin et al., Sec. 5.3, App. A).

Each sampler returns weights on the simplex (sum 1) whose expectation is
``1/T`` for every task; :func:`sample` scales them by ``T`` so that their
expectation equals EW's weights (1 for every task).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from litmus.errors import ConfigError

Sampler = Callable[[int, torch.Generator, torch.device], Tensor]


def _normal(t: int, g: torch.Generator, device: torch.device) -> Tensor:
    """N(0, 1) followed by softmax (the paper's default)."""
    return torch.softmax(torch.randn(t, generator=g), dim=0).to(device)


def _uniform(t: int, g: torch.Generator, device: torch.device) -> Tensor:
    """U(0, 1) followed by softmax."""
    return torch.softmax(torch.rand(t, generator=g), dim=0).to(device)


def _dirichlet(t: int, g: torch.Generator, device: torch.device) -> Tensor:
    """Dirichlet(1): normalised standard exponentials (identity normalisation)."""
    e = -torch.log1p(-torch.rand(t, generator=g, dtype=torch.float64))
    return (e / e.sum()).float().to(device)


def _bernoulli(t: int, g: torch.Generator, device: torch.device) -> Tensor:
    """Bernoulli(1/2) per task, divided by the sum; resampled while all are zero."""
    while True:
        b = (torch.rand(t, generator=g) < 0.5).float()
        s = b.sum()
        if s > 0:
            return (b / s).to(device)


def _c_bernoulli(t: int, g: torch.Generator, device: torch.device) -> Tensor:
    """Constrained Bernoulli: exactly one task, chosen uniformly, per step."""
    w = torch.zeros(t)
    w[int(torch.randint(t, (1,), generator=g))] = 1.0
    return w.to(device)


DISTRIBUTIONS: dict[str, Sampler] = {
    "normal": _normal,
    "uniform": _uniform,
    "dirichlet": _dirichlet,
    "bernoulli": _bernoulli,
    "c-bernoulli": _c_bernoulli,
}


def check_distribution(name: str) -> str:
    if name not in DISTRIBUTIONS:
        raise ConfigError(f"unknown distribution {name!r}; valid: {', '.join(DISTRIBUTIONS)}")
    return name


def sample(name: str, num_tasks: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """Draw one weight vector scaled so that ``E[w_t] = 1`` for every task."""
    sampler = DISTRIBUTIONS[check_distribution(name)]
    return sampler(num_tasks, generator, torch.device(device)) * num_tasks
