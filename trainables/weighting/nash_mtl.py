"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022, Algorithm 1, Eq. 4).

Weights ``alpha > 0`` solving the bargaining condition ``G alpha = 1 / alpha`` (``G = J J^T``),
approximated as in the paper (Sec. 3.2) by ``max_iter`` sequential convex problems (cvxpy + ECOS),
recomputed every ``update_every`` steps (the previous weights are reused in between); the
direction ``sum_t alpha_t g_t`` is then clipped to norm ``max_norm`` (0 disables the clip).

Wraps torchjd's ``NashMTL`` weighting. torchjd catches ``SolverError`` / ``ValueError`` from ECOS
and keeps the previous weights (all ones at the start): a failed solve silently turns Nash-MTL
into EW with clipping. litmus guards the solver call: any solver exception makes ``direction``
raise ``RuntimeError("nash_mtl: ... step k ...")``, and so does a non-optimal status before any
sub-problem was ever solved (the weights would be the initial ones: EW). A non-optimal status
later (the linearised objective can be unbounded below when gradients conflict: 18 of 500 steps
on i.i.d. random 3 x 12 Jacobians) ends the sequence at the last solved iterate, as in the
paper's code (litmus keeps iterates in the scale-free units of ``G / |G|``, see
``_CheckedNashWeighting.forward``, so a kept iterate follows the current gradients' scale);
litmus counts these steps in ``stopped_early`` and warns once. A task with an
all-zero gradient has no bargaining solution and raises.

Scale (part of the method's definition, kept): ``|sum_t alpha_t g_t| = sqrt(T)`` before the clip,
so ``T`` identical gradients ``g`` give ``min(sqrt(T), max_norm) * g / |g|``. ``last_weights``
are the weights after the clip. Cost: one ``T x T`` device->host copy and ``max_iter`` cvxpy/ECOS
solves per updating step.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import cvxpy as cp
import numpy as np
import torch
from torch import Tensor
from torchjd.aggregation._nash_mtl import _NashMTLWeighting

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod
from .base import HParam
from .registry import register

_OK = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


class _CheckedSolve:
    """Stands in for ``problem.solve``: records exceptions and non-optimal statuses, then re-raises."""

    def __init__(self, problem: cp.Problem, failures: list[str], statuses: list[str]) -> None:
        self.problem, self.failures, self.statuses = problem, failures, statuses
        self.solved = 0  # optimal solves so far (this run)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            out = cp.Problem.solve(self.problem, *args, **kwargs)
        except Exception as e:  # recorded, re-raised into torchjd (which swallows it); NashMTL raises
            self.failures.append(f"{type(e).__name__}: {e}")
            raise
        if self.problem.status in _OK:
            self.solved += 1
        else:
            self.statuses.append(str(self.problem.status))
        return out


class _CheckedNashWeighting(_NashMTLWeighting):
    """torchjd's Nash-MTL weighting whose ECOS failures are recorded instead of lost."""

    #: the convex problem is rebuilt from the state (trainables.state), never checkpointed
    derived_state = ("alpha_param", "prvs_alpha_param", "G_param", "normalization_factor_param", "phi_alpha", "prob")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[str] = []
        self.statuses: list[str] = []

    def _init_optim_problem(self) -> None:
        super()._init_optim_problem()
        self.prob.solve = _CheckedSolve(self.prob, self.failures, self.statuses)

    def after_load_state(self) -> None:
        """A checkpoint restored after the first step: rebuild the problem that step 0 would have built."""
        if self.step != 0:
            self._init_optim_problem()

    def forward(self, matrix: Tensor, /) -> Tensor:
        """torchjd's step, solved in scale-free units.

        The bargaining solution scales as ``alpha(c G) = alpha(G) / sqrt(c)``. torchjd (like the
        paper's code) keeps ``alpha`` in the units of ``G`` and passes ``|G|`` into the problem's
        constraints; with small gradients (e.g. on a representation, ``|G| ~ 1e-5``) the
        solution is ~1e2 from the warm start and ECOS stops at its iteration limit on every
        sub-problem. litmus solves for ``G / |G|`` (warm-started in those units) and rescales by
        ``1 / sqrt(|G|)``: the same solution, well conditioned.
        """
        if self.step == 0:
            self._init_optim_problem()
        if self.step % self.update_weights_every == 0:
            gtg = (matrix @ matrix.T).double()
            scale = float(torch.linalg.norm(gtg))
            if not math.isfinite(scale) or scale <= 0.0:
                raise RuntimeError(f"nash_mtl: the task gradients' Gramian has norm {scale}; no bargaining solution")
            self.normalization_factor = np.ones((1,))
            self._unit_scale = 1.0 / math.sqrt(scale)
            self._solve_optimization((gtg / scale).cpu().numpy())
        self.step += 1
        alpha = torch.as_tensor(self.prvs_alpha * self._unit_scale, device=matrix.device, dtype=matrix.dtype)
        if self.max_norm > 0:
            norm = torch.linalg.norm(alpha @ matrix)
            if norm > self.max_norm:
                alpha = alpha / norm * self.max_norm
        return alpha


@register
class NashMTL(WeightedGradientMethod):
    name = "nash_mtl"
    paper = "Navon et al., ICML 2022, Algorithm 1"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("update_every", 1, kind="int", low=1, high=100, log=True, help="recompute the weights every k steps"),
        HParam("max_iter", 20, kind="int", low=1, high=100, tunable=False, help="sequential convex problems per update"),
        HParam("max_norm", 1.0, low=0.1, high=10.0, log=True, tunable=False, help="clip of the direction's norm (0: none)"),
    )

    def __init__(self, num_tasks: int, update_every: int = 1, max_iter: int = 20, max_norm: float = 1.0) -> None:
        super().__init__(num_tasks)
        if update_every < 1 or max_iter < 1 or max_norm < 0:
            raise ConfigError(
                f"nash_mtl needs update_every >= 1, max_iter >= 1, max_norm >= 0; "
                f"got {update_every}, {max_iter}, {max_norm}"
            )
        self.update_every, self.max_iter, self.max_norm = update_every, max_iter, max_norm
        self.stopped_early = 0  # steps whose sub-problem sequence ended on a non-optimal status
        self._weighting = _CheckedNashWeighting(
            n_tasks=num_tasks, max_norm=max_norm, update_weights_every=update_every, optim_niter=max_iter
        )

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        nash = self._weighting
        nash.failures.clear()
        nash.statuses.clear()
        alpha = nash(jacobian.flatten(1))
        step = self.steps - 1
        if nash.failures:
            raise RuntimeError(
                f"nash_mtl: the convex solver (cvxpy/ECOS) failed at step {step}: " + "; ".join(nash.failures)
            )
        if nash.statuses:
            if nash.prob.solve.solved == 0:  # nothing but the initial all-ones weights: that would be EW
                raise RuntimeError(
                    f"nash_mtl: no convex sub-problem solved yet at step {step} (status {', '.join(nash.statuses)}); "
                    "refusing to fall back to equal weights"
                )
            # as in the paper's code: the sequence stops at the last solved iterate (possibly the previous step's)
            self.stopped_early += 1
            if self.stopped_early == 1:
                warnings.warn(
                    f"nash_mtl: a convex sub-problem was {nash.statuses[0]} at step {step}; keeping the last solved "
                    "weights (counted in nash_mtl.stopped_early)", RuntimeWarning, stacklevel=3,
                )
        return alpha
