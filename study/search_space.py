"""Search spaces: registry ``HParam`` and the spec's shared ranges -> Optuna distributions.

Keys: ``lr`` and ``weight_decay`` for the shared space; a method's own
hyperparameters as ``PART.NAME`` (``uw.lr``, ``cagrad.c``), which the
weighting registry routes to the right part of a ``LOSS+GRAD`` method.
Hyperparameters the spec fixes in ``params``, non-tunable ones, the random
methods' ``distribution`` and ``seed`` are not searched.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from trainables import weighting
from trainables.weighting.base import HParam

from .spec import MethodSpec, Spec

NOT_SEARCHED = ("distribution", "seed")


def hparam_distribution(p: HParam) -> BaseDistribution | None:
    """One registry hyperparameter as an Optuna distribution (None if it has no usable range)."""
    if p.kind in ("categorical", "bool"):
        choices = p.choices if p.choices is not None else ((False, True) if p.kind == "bool" else None)
        return CategoricalDistribution(list(choices)) if choices else None
    if p.low is None or p.high is None or p.high <= p.low:
        return None
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log)
    return FloatDistribution(float(p.low), float(p.high), log=p.log)


def method_space(m: MethodSpec) -> dict[str, BaseDistribution]:
    """The method's own tunable hyperparameters (both parts of a combination)."""
    loss, grad = weighting.split_name(m.name)
    fixed = {k.split(".", 1)[-1] for k in m.params}
    out: dict[str, BaseDistribution] = {}
    for part in (loss, grad):
        if part is None:
            continue
        for p in weighting.get(part).hparams:
            if not p.tunable or p.name in NOT_SEARCHED or p.name in fixed:
                continue
            dist = hparam_distribution(p)
            if dist is not None:
                out[f"{part}.{p.name}"] = dist
    return out


def shared_space(spec: Spec) -> dict[str, BaseDistribution]:
    return {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in spec.tuning.shared.items() if not r.fixed}


def space(spec: Spec, m: MethodSpec) -> dict[str, BaseDistribution]:
    """The full search space of one method in the study."""
    return {**shared_space(spec), **method_space(m)}


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna params -> (method_params, shared TrainConfig fields)."""
    shared = {k: v for k, v in params.items() if "." not in k}
    method = {k: v for k, v in params.items() if "." in k}
    return method, shared
