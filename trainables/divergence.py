"""When a trial has diverged: the rule, in one place (docs/spec.md, "Divergence").

A trial diverges, and stops with status ``diverged`` (a result, not a
failure: it is recorded, counted and shown, never averaged into a table), when

* a task's training loss on a step is not finite, or exceeds
  ``divergence_factor`` (default :data:`DEFAULT_FACTOR`) times that task's
  loss on the trial's first step, i.e. of the freshly initialised model
  (tasks with a first loss of 0 are checked for finiteness only); or
* a metric (loss or other) of an evaluated epoch is not finite.

The first step, not the first epoch's mean, is the reference: with a huge
learning rate the loss explodes within the first epoch (lr = 1e6 on
multi_digits: 2.35 on step 1, 4e20 on step 2, an epoch-1 mean of 9e19 that
the next epochs stay below), so a multiple of the epoch mean would never
trigger. The factor is a per-dataset training option in a spec
(``datasets[i].train.divergence_factor``); ``null`` keeps the finiteness rule only.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from litmus.errors import ConfigError

#: default multiple of the first step's loss above which a trial has diverged
DEFAULT_FACTOR = 100.0


def step_limits(first: Tensor | None, factor: float | None) -> list[float] | None:
    """Per task, the loss above which a step diverges: ``factor * first`` computed on the tensors in
    the losses' dtype (so the comparison is the tensors' own), ``inf`` for a task whose first loss is
    not positive (finiteness only); None without a reference or a factor. Computed once per trial."""
    if first is None or not factor:
        return None
    return [lim if f > 0 else math.inf for f, lim in zip(first.tolist(), (factor * first).tolist())]


def step_reason(losses: Tensor, first: Tensor | None, factor: float | None,
                limits: list[float] | None = None) -> str | None:
    """Why the detached task ``losses`` of a step mean divergence (``None``: they do not).

    One host copy of the ``T`` losses instead of a chain of tiny tensor ops: this runs on every
    step. ``limits``: :func:`step_limits` of ``first`` and ``factor``, when the caller keeps them."""
    vals = losses.tolist()
    finite = all(math.isfinite(v) for v in vals)
    if limits is None:
        limits = step_limits(first, factor)
    over = limits is not None and any(v > lim for v, lim in zip(vals, limits))
    if finite and not over:
        return None
    if not finite:
        return "non-finite loss"
    assert first is not None and factor
    return f"training loss above {factor:g} x its first-step loss {[round(float(v), 4) for v in first]}"


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite. First the plain sum (one read of ``t``, no temporary):
    a finite sum means every entry is finite (a NaN or an infinity makes any sum non-finite); only a
    non-finite sum, which finite entries can also give by overflowing, is settled exactly by one fused
    reduction: ``x * 0`` is 0 for a finite ``x`` and NaN otherwise, so that sum is NaN exactly when
    some entry is not finite (and cannot overflow). On CPU ~10x cheaper than
    ``torch.isfinite(t).all()``, which materialises two boolean tensors."""
    return math.isfinite(float(t.sum())) or math.isfinite(float((t * 0).sum()))


def rows_reason(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """Why an epoch's metric rows mean divergence: the first non-finite value."""
    for r in rows:
        if not math.isfinite(r["value"]):
            return f"non-finite {r['split']} {r['task']} {r['metric']} ({r['value']})"
    return None


def check_factor(value: Any) -> None:
    """``divergence_factor`` must be ``None`` or a finite number > 1 (raises ``ValueError``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 1:
        raise ConfigError(f"divergence_factor must be a number > 1 (a multiple of the first step's loss) or null, "
                          f"got {value!r}")
