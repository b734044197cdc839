"""Synthetic stores with known effects, for tests, benchmarks and examples.

Values follow a saturating learning curve towards ``base * (1 + s * effect / 100)``
(s = +1 when higher is better, else -1), so a variant with ``effect = e`` on
every metric has a true Delta-m of about ``e`` percent against a variant with
effect 0. Seed noise is a per-trial relative offset of standard deviation
``seed_sd`` percent; epoch noise is smaller and independent per epoch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .naming import group_of
from .schema import METRICS_SCHEMA, TRIALS_SCHEMA, Stage, Status

# (task, metric, higher_is_better, base value)
NYU_LIKE = [
    ("segmentation", "miou", True, 0.53), ("segmentation", "pix_acc", True, 0.75),
    ("depth", "abs_err", False, 0.38), ("depth", "rel_err", False, 0.16),
    ("normal", "mean", False, 23.5), ("normal", "within_11.25", True, 0.35),
]


@dataclass
class SyntheticStudy:
    """What to generate: variants -> effect (Delta-m percent) per dataset."""

    effects: dict[str, dict[str, float]]  # dataset -> {variant: effect}
    tasks: dict[str, list[tuple[str, str, bool, float]]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    epochs: int = 10
    splits: tuple[str, ...] = ("train", "val", "test")
    seed_sd: float = 0.5
    epoch_sd: float = 0.1
    study: str = "synthetic"
    stage: str = Stage.FINAL
    arch: str = "hps"
    status: dict[tuple[str, str, int], str] = field(default_factory=dict)  # (dataset, variant, seed) -> status
    rng_seed: int = 0
    replicates: int = 1      # tuning replicates: each variant's K winners run on every seed
    tuning_sd: float = 0.0   # sd (Delta-m points) of a replicate's offset (what the tuning found)
    #: method -> family as study records it from the method registry (default: from the name's structure)
    families: dict[str, str] = field(default_factory=dict)


def _trial_id(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def trials_frame(spec: SyntheticStudy) -> pd.DataFrame:
    """One row per trial of ``spec`` (contract columns of ``<store>/trials``)."""
    rows = []
    rng = np.random.default_rng([spec.rng_seed, 1])
    for dataset, effects in spec.effects.items():
        for variant in effects:
            method, _, dist = variant.partition(":")
            offsets = rng.normal(0.0, spec.tuning_sd, spec.replicates) if spec.replicates > 1 else [0.0]
            for rep, off in enumerate(offsets):
                extra = (rep,) if spec.replicates > 1 else ()
                for seed in spec.seeds:
                    rows.append({
                        "trial_id": _trial_id(spec.study, spec.stage, dataset, spec.arch, variant, seed, *extra),
                        "study": spec.study, "stage": spec.stage, "dataset": dataset, "arch": spec.arch,
                        "method": method, "distribution": dist or None, "seed": seed,
                        "family": spec.families.get(method) or group_of(variant), "config": "{}",
                        "status": str(spec.status.get((dataset, variant, seed), Status.COMPLETED)), "error": None,
                        "epochs": spec.epochs, "wall_time_s": 1.0, "step_time_ms": 1.0,
                        "peak_memory_mb": 1.0, "device": "cpu", "host": "localhost", "node": None, "gpu_ids": None,
                        "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00",
                        "versions": "{}", "replicate": rep if spec.replicates > 1 else None,
                        "_effect": effects[variant] + off,
                    })
    return pd.DataFrame(rows)


def metrics_frame(spec: SyntheticStudy) -> pd.DataFrame:
    """The metrics rows of ``spec``, vectorised (one block per dataset)."""
    rng = np.random.default_rng(spec.rng_seed)
    trials = trials_frame(spec)
    blocks = []
    for dataset, tr in trials.groupby("dataset", sort=False):
        tasks = spec.tasks.get(dataset, NYU_LIKE)
        n_t, n_s, n_e, n_k = len(tr), len(spec.splits), spec.epochs, len(tasks)
        t_idx, s_idx, e_idx, k_idx = (a.ravel() for a in np.meshgrid(
            np.arange(n_t), np.arange(n_s), np.arange(n_e), np.arange(n_k), indexing="ij"))
        hib = np.array([t[2] for t in tasks])[k_idx]
        base = np.array([t[3] for t in tasks])[k_idx]
        sign = np.where(hib, 1.0, -1.0)
        effect = tr["_effect"].to_numpy()[t_idx]
        offset = rng.normal(0.0, spec.seed_sd, size=(n_t, n_k))[t_idx, k_idx]
        final = base * (1 + sign * (effect + offset) / 100)
        epoch = e_idx + 1
        curve = np.exp(-epoch / max(n_e / 4, 1.0)) * 0.3 * (1 - np.exp(-n_e / max(n_e / 4, 1.0)) ** 0)
        value = final * (1 - sign * curve) * (1 + rng.normal(0.0, spec.epoch_sd, size=t_idx.size) / 100)
        blocks.append(pd.DataFrame({
            "study": spec.study, "stage": spec.stage,
            "trial_id": tr["trial_id"].to_numpy()[t_idx], "dataset": dataset, "arch": spec.arch,
            "method": tr["method"].to_numpy()[t_idx], "distribution": tr["distribution"].to_numpy()[t_idx],
            "seed": tr["seed"].to_numpy()[t_idx].astype("int64"),
            "split": np.array(spec.splits)[s_idx], "epoch": epoch.astype("int64"),
            "task": np.array([t[0] for t in tasks])[k_idx], "metric": np.array([t[1] for t in tasks])[k_idx],
            "value": value, "higher_is_better": hib,
        }))
    return pd.concat(blocks, ignore_index=True)


def write_store(path: str | Path, metrics: pd.DataFrame, trials: pd.DataFrame | None = None,
                one_file_per_trial: bool = True) -> Path:
    """Write a store like the study driver does (one Parquet file per trial by default)."""
    path = Path(path)
    (path / "metrics").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(metrics[METRICS_SCHEMA.names], schema=METRICS_SCHEMA, preserve_index=False)
    if one_file_per_trial:
        ids = table.column("trial_id").to_numpy(zero_copy_only=False)
        order = np.argsort(ids, kind="stable")
        ids_sorted = ids[order]
        starts = np.flatnonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])
        sorted_table = table.take(pa.array(order))
        bounds = np.r_[starts, len(ids_sorted)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            pq.write_table(sorted_table.slice(a, b - a), path / "metrics" / f"{ids_sorted[a]}.parquet")
    else:
        pq.write_table(table, path / "metrics" / "part-0.parquet")
    if trials is not None:
        (path / "trials").mkdir(parents=True, exist_ok=True)
        cols = [c for c in TRIALS_SCHEMA.names]
        pq.write_table(pa.Table.from_pandas(trials[cols], schema=TRIALS_SCHEMA, preserve_index=False),
                       path / "trials" / "trials.parquet")
    return path


def make_store(path: str | Path, spec: SyntheticStudy, one_file_per_trial: bool = True) -> Path:
    """Generate ``spec`` and write it as a store at ``path``."""
    return write_store(path, metrics_frame(spec), trials_frame(spec), one_file_per_trial)
