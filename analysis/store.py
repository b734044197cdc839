"""Readers of the litmus Parquet store (see docs/statistics.md and DESIGN.md).

``load`` returns the metrics table (one row per trial x split x epoch x task x
metric) with two added columns: ``variant`` (``method`` or
``method:distribution``) and ``status`` (from the trials table; ``unknown``
when the store has none). Only readers live here; the writer is
``study/store.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import AnalysisError
from .naming import variant_column, variant_name

METRICS_SCHEMA = pa.schema([
    ("study", pa.string()), ("stage", pa.string()), ("trial_id", pa.string()),
    ("dataset", pa.string()), ("arch", pa.string()), ("method", pa.string()),
    ("distribution", pa.string()), ("seed", pa.int64()), ("split", pa.string()),
    ("epoch", pa.int64()), ("task", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()), ("higher_is_better", pa.bool_()),
])
TRIALS_SCHEMA = pa.schema([
    ("trial_id", pa.string()), ("study", pa.string()), ("stage", pa.string()),
    ("dataset", pa.string()), ("arch", pa.string()), ("method", pa.string()),
    ("distribution", pa.string()), ("seed", pa.int64()), ("config", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("epochs", pa.int64()),
    ("wall_time_s", pa.float64()), ("step_time_ms", pa.float64()),
    ("peak_memory_mb", pa.float64()), ("device", pa.string()), ("host", pa.string()),
    ("started_at", pa.string()), ("finished_at", pa.string()), ("versions", pa.string()),
])
WEIGHTS_SCHEMA = pa.schema([
    ("trial_id", pa.string()), ("epoch", pa.int64()), ("task", pa.string()), ("weight", pa.float64()),
])
# Columns that must never be null in the metrics table (distribution may be).
REQUIRED_METRICS = [c for c in METRICS_SCHEMA.names if c not in ("distribution", "value")]
CATEGORICAL = ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution",
               "split", "task", "metric"]
USABLE_STATUS = ("completed", "unknown")

Filter = str | Iterable[str] | None


def _parquet_files(path: Path) -> list[Path]:
    """Data files of a dataset directory (skipping ``.``/``_`` names and ``*.tmp``)."""
    files = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).parts
        if any(p.startswith((".", "_")) for p in rel) or f.name.endswith(".tmp") or not f.is_file():
            continue
        files.append(f)
    return files


def _table_files(store: str | Path, table: str) -> list[Path]:
    """Files of ``table`` (metrics, trials, weights) for a store dir, a dataset dir or one file."""
    path = Path(store)
    if not path.exists():
        raise AnalysisError(f"store not found: {path}")
    if path.is_file():
        return [path] if table == "metrics" else []
    if (path / table).is_dir():
        return _parquet_files(path / table)
    if any((path / t).is_dir() for t in ("metrics", "trials", "weights")):
        return []  # a store without this table
    return _parquet_files(path) if table == "metrics" else []


def _as_list(value: Filter) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _find_bad_file(files: list[Path], schema: pa.Schema) -> tuple[Path, Exception] | None:
    """The first file that pyarrow cannot read as ``schema`` (slow path, only after a failure)."""
    for f in files:
        try:
            t = pq.read_table(f)
            t.select([n for n in schema.names if n in t.schema.names]).cast(
                pa.schema([schema.field(n) for n in schema.names if n in t.schema.names]))
        except (pa.ArrowException, OSError, ValueError) as err:
            return f, err
    return None


def _read(files: list[Path], schema: pa.Schema, filters: dict[str, list[str] | None]) -> pa.Table:
    expr = None
    for col, values in filters.items():
        if values is not None and col in schema.names:
            term = ds.field(col).isin(values)
            expr = term if expr is None else expr & term
    try:
        dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
        return dataset.to_table(filter=expr)
    except (pa.ArrowException, OSError) as err:
        bad = _find_bad_file(files, schema)
        if bad is not None:
            path, cause = bad
            first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            raise AnalysisError(f"corrupted or unreadable Parquet file {path}: {first}") from err
        raise AnalysisError(f"cannot read the store: {str(err).splitlines()[0]}") from err


def _to_pandas(table: pa.Table, categorical: list[str]) -> pd.DataFrame:
    cols = {}
    for name in table.schema.names:
        col = table.column(name)
        if name in categorical:
            col = pc.dictionary_encode(col)
        cols[name] = col
    return pa.table(cols).to_pandas()


def load_trials(store: str | Path, study: Filter = None, stage: Filter = None,
                dataset: Filter = None) -> pd.DataFrame:
    """The trials table (one row per trial; empty with the contract's columns when absent)."""
    files = _table_files(store, "trials")
    if not files:
        return TRIALS_SCHEMA.empty_table().to_pandas()
    table = _read(files, TRIALS_SCHEMA, {"study": _as_list(study), "stage": _as_list(stage),
                                         "dataset": _as_list(dataset)})
    frame = table.to_pandas()
    # A trial rewritten by the driver (running -> completed) keeps its last row.
    frame = frame.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
    frame["variant"] = variant_column(frame["method"], frame["distribution"])
    return frame


def load_weights(store: str | Path) -> pd.DataFrame:
    """Effective per-epoch mean task weights (trial_id, epoch, task, weight); empty if absent."""
    files = _table_files(store, "weights")
    if not files:
        return WEIGHTS_SCHEMA.empty_table().to_pandas()
    return _read(files, WEIGHTS_SCHEMA, {}).to_pandas()


def load(store: str | Path, study: Filter = None, stage: Filter = None,
         dataset: Filter = None, include_loss: bool = False) -> pd.DataFrame:
    """Metrics of a store directory, a metrics dataset directory or one Parquet file.

    Filters keep the given study / stage / dataset names (a name or a list).
    The trainer also records each task's training objective as metric ``loss``;
    it is not a task metric of the papers' tables or of Delta-m, so it is left
    out unless ``include_loss``.
    Adds ``variant`` and ``status`` (from the trials table, ``unknown`` if absent).
    Raises :class:`AnalysisError` for an empty store, a corrupted file (named),
    null required fields or a metric without direction.
    """
    files = _table_files(store, "metrics")
    if not files:
        raise AnalysisError(f"no metrics Parquet files in {store}")
    filters = {"study": _as_list(study), "stage": _as_list(stage), "dataset": _as_list(dataset)}
    table = _read(files, METRICS_SCHEMA, filters)
    if not include_loss:
        table = table.filter(pc.invert(pc.equal(table.column("metric"), "loss")))
    if table.num_rows == 0:
        wanted = {k: v for k, v in filters.items() if v}
        raise AnalysisError(f"no metric rows in {store}" + (f" matching {wanted}" if wanted else ""))
    for col in REQUIRED_METRICS:
        nulls = table.column(col).null_count
        if nulls and col != "higher_is_better":
            raise AnalysisError(f"column {col!r} has {nulls} null values in {store} (missing column in some file?)")
    frame = _to_pandas(table, CATEGORICAL)
    _check_directions(frame)
    frame["variant"] = _variant_categorical(frame["method"], frame["distribution"])
    trials = load_trials(store, study=study, stage=stage, dataset=dataset)
    status = dict(zip(trials["trial_id"], trials["status"]))
    codes = frame["trial_id"].cat.categories.map(lambda t: status.get(t, "unknown"))
    frame["status"] = pd.Categorical(pd.Series(codes, dtype=object).take(
        frame["trial_id"].cat.codes.to_numpy()).to_numpy())
    return frame


def names(column: pd.Series) -> list[str]:
    """Sorted distinct values of a (categorical or string) column as str, without converting every row."""
    return sorted(str(x) for x in pd.unique(column.dropna()))


def plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns -> str (for small frames such as selected values)."""
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.astype({c: str for c in cats}) if cats else frame


def _variant_categorical(method: pd.Series, distribution: pd.Series) -> pd.Categorical:
    """``variant`` from two categorical columns, computed once per distinct pair (fast on 1M rows)."""
    mcats, dcats = method.cat.categories, distribution.cat.categories
    nd = len(dcats) + 1
    key = method.cat.codes.to_numpy().astype(np.int64) * nd + distribution.cat.codes.to_numpy() + 1
    uniq, inv = np.unique(key, return_inverse=True)
    labels = [variant_name(str(mcats[k // nd]), None if k % nd == 0 else str(dcats[k % nd - 1])) for k in uniq]
    return pd.Categorical.from_codes(inv.ravel(), categories=labels)


def _check_directions(frame: pd.DataFrame) -> None:
    """Every metric needs one direction: no nulls, no disagreement across rows."""
    keys = ["dataset", "task", "metric"]
    hib = frame["higher_is_better"]
    if hib.isna().any():
        bad = frame.loc[hib.isna(), keys].drop_duplicates().head(3)
        names = ", ".join("/".join(map(str, r)) for r in bad.itertuples(index=False))
        raise AnalysisError(f"metric without direction (null higher_is_better): {names}")
    n = frame.groupby(keys, observed=True)["higher_is_better"].nunique()
    if (n > 1).any():
        names = ", ".join("/".join(map(str, k)) for k in n[n > 1].index[:3])
        raise AnalysisError(f"metric with conflicting higher_is_better across rows: {names}")
