"""Tuning candidates as a pure function of the study's history: common random numbers, then TPE.

Trial ``n`` of the Optuna study of one dataset x arch x method (x replicate):

* **start-up** (``n < tuning.sampler.startup``; every trial with the random
  sampler): the shared hyperparameters (``lr``, ``weight_decay``) are point
  ``n`` of a scrambled Sobol sequence (``scipy.stats.qmc.Sobol``) seeded by
  the sampler seed, the dataset and the replicate, so every method on a
  dataset evaluates the same candidates in the same order (common random
  numbers: a difference between methods is not a learning-rate draw). The
  method's own hyperparameters are drawn on top, uniformly, from a stream
  seeded by the study and ``n``.
* **model-based** (``n >= startup``): a TPE sampler seeded by the study and
  ``n`` proposes from trials ``0 .. n-1``, which are all finished when ``n``
  is asked (the tuning source waits for them). Failed and diverged trials
  enter as the worst value seen (never the best); pruned ones as pruned.

Nothing depends on timing, on how many trials a resumed driver found, or on
a sampler's internal state: an interrupted and resumed study asks exactly
the candidates an uninterrupted one asks.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import qmc

from .spec import Range


def stream_seed(*parts: Any) -> int:
    """A 32-bit seed from a tuple of labels (stable across runs and machines, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def shared_candidates(shared: dict[str, Range], seed: int, dataset: str, replicate: int,
                      n: int) -> list[dict[str, float]]:
    """The first ``n`` shared candidates on ``dataset``: scrambled Sobol points mapped onto the ranges
    (log-uniform where ``log``); the same list for every method of the dataset and replicate."""
    names = sorted(k for k, r in shared.items() if not r.fixed)
    if not names or n <= 0:
        return [{} for _ in range(max(n, 0))]
    sobol = qmc.Sobol(len(names), scramble=True, seed=np.random.default_rng(stream_seed(seed, dataset, replicate)))
    u = sobol.random_base2(max(0, math.ceil(math.log2(n))))[:n]
    out = []
    for row in u:
        point = {}
        for k, x in zip(names, row):
            r = shared[k]
            v = math.exp(math.log(r.low) + x * (math.log(r.high) - math.log(r.low))) if r.log \
                else r.low + x * (r.high - r.low)
            point[k] = min(max(v, r.low), r.high)
        out.append(point)
    return out


def random_params(space: dict[str, BaseDistribution], seed: int) -> dict[str, Any]:
    """Independent uniform draws (Optuna's random sampler) from ``space`` with a fixed seed."""
    if not space:
        return {}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return dict(study.ask(space).params)


def history_view(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials as the model-based sampler sees them: failed (and diverged) trials become
    completed with the worst value seen, so blowing up is never a good region; without any completed
    trial they carry no information and are left out."""
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    worst = min(values) if values else None
    out = []
    for t in trials:
        common = {"params": t.params, "distributions": t.distributions}
        if t.state == TrialState.COMPLETE:
            out.append(optuna.trial.create_trial(value=t.value, **common))
        elif t.state == TrialState.FAIL and worst is not None:
            out.append(optuna.trial.create_trial(value=worst, **common))
        elif t.state == TrialState.PRUNED:
            out.append(optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values=t.intermediate_values,
                                                 **common))
    return out


def candidate(space: dict[str, BaseDistribution], shared: dict[str, Range], *, sampler: str, sampler_seed: int,
              startup: int, study: str, dataset: str, replicate: int, number: int,
              history: Sequence[FrozenTrial]) -> dict[str, Any]:
    """The hyperparameters of trial ``number`` (``history``: the study's trials ``0 .. number-1``, finished)."""
    if number < startup or sampler == "random":
        params = shared_candidates(shared, sampler_seed, dataset, replicate, number + 1)[number]
        own = {k: d for k, d in space.items() if k not in params}
        params.update(random_params(own, stream_seed(sampler_seed, study, number)))
        return {k: params[k] for k in space}
    view = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=stream_seed(sampler_seed, study, number), n_startup_trials=startup))
    view.add_trials(history_view(history))
    return dict(view.ask(space).params)


class FixedSampler(optuna.samplers.BaseSampler):
    """Makes ``study.ask`` record the parameters :func:`candidate` chose (set ``params`` before asking)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        value = self.params[param_name]
        if isinstance(param_distribution, FloatDistribution):
            value = float(value)
        return value
