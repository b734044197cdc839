"""The results store's contract: table schemas, layout names, and the stage / status / family vocabularies.

This module is the one owner of the contract (docs/store.md): ``study``
writes the store with these schemas and enums, ``analysis`` reads it with
them. It imports nothing from litmus, so both sides can use it (analysis
never imports study).
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class Stage(StrEnum):
    """Which part of a study a trial belongs to (the EW reference trials are ``tune`` trials)."""

    TUNE = "tune"
    FINAL = "final"
    SINGLE = "single"  # one `litmus train` run


class Status(StrEnum):
    """A trial's state in the trials table."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"


#: statuses after which a trial never changes again (unless rerun with --retry-failed)
FINISHED: tuple[Status, ...] = (Status.COMPLETED, Status.FAILED, Status.DIVERGED)


class Family(StrEnum):
    """Method family as in the random-weighting paper's Table 1 (Lin et al., TMLR 2022)."""

    LOSS = "loss"          # loss weighting
    GRADIENT = "gradient"  # gradient method, or any LOSS+GRAD combination
    RANDOM = "random"      # RLW / RGW alone


# columns every metric row and every trial record carries
GROUP_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("study", pa.string()),
    ("stage", pa.string()),
    ("trial_id", pa.string()),
    ("dataset", pa.string()),
    ("arch", pa.string()),
    ("method", pa.string()),
    ("distribution", pa.string()),
    ("seed", pa.int64()),
]
#: the key of one metric row within a trial
METRIC_KEY: tuple[str, ...] = ("split", "epoch", "task", "metric")
METRICS_SCHEMA = pa.schema(
    GROUP_COLUMNS
    + [
        ("split", pa.string()),
        ("epoch", pa.int64()),
        ("task", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("higher_is_better", pa.bool_()),
    ]
)
TRIALS_SCHEMA = pa.schema(
    GROUP_COLUMNS
    + [
        ("family", pa.string()),
        ("config", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("epochs", pa.int64()),
        ("wall_time_s", pa.float64()),
        ("step_time_ms", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("device", pa.string()),
        ("host", pa.string()),
        ("node", pa.string()),      # Ray node id the trial ran on (null outside Ray)
        ("gpu_ids", pa.string()),   # GPU ids Ray assigned, comma-separated ("" for none; null outside Ray)
        ("started_at", pa.string()),
        ("finished_at", pa.string()),
        ("versions", pa.string()),
        ("replicate", pa.int64()),  # tuning replicate whose winner the trial runs (null: untuned; older stores)
    ]
)
WEIGHTS_SCHEMA = pa.schema(
    [("study", pa.string()), ("trial_id", pa.string()), ("epoch", pa.int64()), ("task", pa.string()),
     ("weight", pa.float64())]
)
SCHEMAS: dict[str, pa.Schema] = {"metrics": METRICS_SCHEMA, "trials": TRIALS_SCHEMA, "weights": WEIGHTS_SCHEMA}
#: the store's tables, each a folder of per-trial files under the store root
TABLES: tuple[str, ...] = tuple(SCHEMAS)

#: decisions of a sequential final stage, one row per comparison and round (analysis/sequential.py;
#: written by study/rounds.py as ``<store>/decisions/<study>.parquet``, atomically after each round)
DECISIONS_DIR = "decisions"
DECISION_SCHEMA = pa.schema([
    ("study", pa.string()), ("round", pa.int64()), ("seeds", pa.int64()), ("dataset", pa.string()),
    ("arch", pa.string()), ("variant", pa.string()), ("against", pa.string()), ("state", pa.string()),
    ("boundary", pa.string()), ("diff_delta_m", pa.float64()), ("n_failed", pa.int64()),
    # the design, repeated on every row so that a reader can rebuild it without the spec
    ("start", pa.int64()), ("step", pa.int64()), ("max", pa.int64()), ("alpha", pa.float64()),
    ("family", pa.int64()), ("spending", pa.string()), ("margin", pa.float64()),
])

# --- layout -----------------------------------------------------------------------------------------------
#: compacted files and their manifest live under ``<store>/compacted/``; the manifest names every live file
COMPACTED_DIR = "compacted"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
