"""The study plan: deterministic trials (ids from study/ids.py over the resolved TrainConfig dict).

A :class:`Job` is one Ray trial. The reference and final stages are fixed
lists; the tuning stage's trials are sampled by Optuna, so the plan saved in
the store (``<store>/studies/<name>.json``) records how many trials each
dataset x arch x method gets in each stage, and the final trial ids once
the tuned hyperparameters are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.schema import Stage
from trainables.config import TrainConfig, resolve

from .ids import trial_id
from .atomic import write_json
from .saved_plan import load_plan, plan_path  # noqa: F401 - part of this module's interface
from .search_space import space
from .spec import Spec, base_config

REFERENCE = "ew"


@dataclass(frozen=True)
class Job:
    """One Ray trial: its stage, deterministic id, resolved config, and the validation reference if tuning."""

    stage: Stage
    trial_id: str
    config: dict[str, Any]
    label: str = ""
    replicate: int | None = None  # the tuning replicate (tuning and final trials of tuned methods)
    patience: int | None = None  # early stopping on validation Delta-m (study/convergence.py)
    #: tuning trials: the EW reference's validation means (``task/metric`` -> value) their score is against
    reference: dict[str, float] | None = field(default=None, hash=False, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.config["dataset"], self.config["arch"], self.config["method"])


def make_job(spec: Spec, stage: Stage, cfg: TrainConfig, label: str = "", replicate: int | None = None) -> Job:
    """A job; with several tuning replicates its id includes the replicate (two replicates may pick the same
    hyperparameters, and each runs its own final trials)."""
    config = resolve(cfg)[0].to_dict()
    stage = Stage(stage)
    extra: dict[str, Any] = {"replicate": replicate} if replicate is not None and spec.tuning.replicates > 1 else {}
    ds = next(d for d in spec.datasets if d.name == cfg.dataset)
    patience = ds.patience if label != "reference" else None  # the reference defines the score: it runs N epochs
    if patience is not None:
        extra["patience"] = patience
    return Job(stage, trial_id(spec.name, str(stage), config, **extra), config, label or str(stage), replicate,
               patience)


def tuned_methods(spec: Spec) -> list[str]:
    """Methods that get an Optuna study: listed under tuning.methods and with a non-empty search space."""
    if not spec.tuning.enabled:
        return []
    return [m.name for m in spec.methods if m.name in spec.tuning.methods and space(spec, m)]


def needs_reference(spec: Spec) -> bool:
    """The EW reference runs when a method is tuned or a dataset stops early (both score against it)."""
    return bool(tuned_methods(spec)) or any(ds.patience for ds in spec.datasets)


def reference_jobs(spec: Spec) -> list[Job]:
    """EW at default hyperparameters on the tuning seeds, per dataset x arch (runs before tuning)."""
    if not needs_reference(spec):
        return []
    ew = next((m for m in spec.methods if m.name == REFERENCE), None)
    from .spec import MethodSpec
    ew = MethodSpec(REFERENCE, [None], {}, ew.space if ew else None)
    return [make_job(spec, Stage.TUNE, base_config(spec, ds, arch, ew, None, seed), "reference")
            for ds in spec.datasets for arch in spec.archs for seed in spec.tuning.replicate_seeds(0)]


def final_jobs(spec: Spec, best: dict[str, Any]) -> list[Job]:
    """Every dataset x arch x method x distribution x final seed, with tuned (or default) hyperparameters;
    a tuned method runs each tuning replicate's winner on the final seeds."""
    from .search_space import split_params
    jobs = []
    for ds in spec.datasets:
        for arch in spec.archs:
            for m in spec.methods:
                found = best.get(ds.name, {}).get(arch, {}).get(m.name)
                winners: list[tuple[int | None, dict[str, Any]]] = [(None, {})]
                if found:
                    winners = list(enumerate(e["params"] for e in found.get("replicates", [found])))
                for rep, chosen in winners:
                    params, shared = split_params(chosen)
                    for dist in m.distributions:
                        for seed in spec.final_seeds:
                            jobs.append(make_job(spec, Stage.FINAL, base_config(spec, ds, arch, m, dist, seed, params,
                                                                            shared), replicate=rep))
    return jobs


def planned_counts(spec: Spec) -> dict[str, dict[str, int]]:
    """stage label -> "dataset/arch/method" -> number of planned Ray trials."""
    out: dict[str, dict[str, int]] = {"reference": {}, "tune": {}, "final": {}}
    tuned = tuned_methods(spec)
    for ds in spec.datasets:
        for arch in spec.archs:
            if needs_reference(spec):
                out["reference"][f"{ds.name}/{arch}/{REFERENCE}"] = len(spec.tuning.seeds)
            for m in spec.methods:
                key = f"{ds.name}/{arch}/{m.name}"
                reps = spec.tuning.replicates if m.name in tuned else 1
                if m.name in tuned:
                    out["tune"][key] = spec.tuning.trials * len(spec.tuning.seeds) * reps
                out["final"][key] = len(m.distributions) * len(spec.final_seeds) * reps
    return out


def save_plan(spec: Spec, store_root: Path, reference: list[Job], final: list[Job] | None) -> Path:
    """Save the resolved spec and plan as JSON under ``<store>/studies/``."""
    path = plan_path(store_root, spec.name)
    write_json(path, {
        "spec": spec.to_json(),
        "planned": planned_counts(spec),
        "reference_ids": [j.trial_id for j in reference],
        "final_ids": None if final is None else [j.trial_id for j in final],
    })
    return path
