"""Builders of small hand-made and synthetic stores for the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.synthetic import SyntheticStudy, make_store, metrics_frame, trials_frame, write_store


def rows(dataset: str, variant: str, seed: int, values: dict[tuple[str, str], float],
         directions: dict[tuple[str, str], bool], epoch: int = 1, split: str = "test",
         study: str = "s", stage: str = "final", arch: str = "hps") -> list[dict]:
    """Metric rows of one trial x split x epoch from {(task, metric): value}."""
    method, _, dist = variant.partition(":")
    return [{"study": study, "stage": stage, "trial_id": f"{dataset}-{arch}-{variant}-{seed}",
             "dataset": dataset, "arch": arch, "method": method, "distribution": dist or None,
             "seed": seed, "split": split, "epoch": epoch, "task": t, "metric": m, "value": v,
             "higher_is_better": directions[(t, m)]} for (t, m), v in values.items()]


def store_from_rows(path: Path, records: list[dict]) -> Path:
    """Write hand-made rows as a store (one file per trial, no trials table)."""
    return write_store(path, pd.DataFrame(records))


__all__ = ["SyntheticStudy", "make_store", "metrics_frame", "trials_frame", "write_store", "rows", "store_from_rows"]
