"""Readers of the litmus Parquet store (docs/store.md; the contract is analysis/schema.py).

``load`` returns the metrics table (one row per trial x split x epoch x task x
metric) with two added columns: ``variant`` (``method`` or
``method:distribution``) and ``status`` (from the trials table; ``unknown``
when the store has none). It suits small stores; large ones are read in
columns by :func:`analysis.select.store_selection` (DuckDB over
:func:`sources`). Only readers live here; the writer is ``study/store.py``.

A table's rows live in per-trial files (``<table>/<trial_id>.parquet`` or
``<table>/<trial_id>/<part>.parquet``) and in compacted files named by
``compacted/manifest.json``. A trial with both copies (a compaction killed
before it removed the per-trial files, or a trial rerun after compaction) is
read once, from its per-trial copy, and reported by :func:`sources`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from litmus.errors import StoreWarning, Vanished  # noqa: F401 - part of this module's interface

from .errors import AnalysisError
from .files import (_TRIAL_FILE, Sources, _litmus_files, _parquet_files, per_trial_ids,  # noqa: F401
                    read_manifest, sources, trial_of)
from .naming import variant_column, variant_name
from .schema import METRICS_SCHEMA, TRIALS_SCHEMA, WEIGHTS_SCHEMA, Status

# Columns that must never be null in the metrics table (distribution may be).
REQUIRED_METRICS = [c for c in METRICS_SCHEMA.names if c not in ("distribution", "value")]
CATEGORICAL = ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution",
               "split", "task", "metric"]
USABLE_STATUS = (str(Status.COMPLETED), "unknown")

Filter = str | Iterable[str] | None

RETRIES = 5


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


def _read_sources(src: Sources, schema: pa.Schema, filters: dict[str, list[str] | None]) -> pa.Table:
    """Rows of per-trial and compacted files (compacted rows of shadowed trials skipped); listed again
    if a file vanished while being read (a running driver renames parts, a compaction removes files)."""
    for attempt in range(RETRIES):
        try:
            return _read_once(src, schema, filters)
        except Vanished:
            if src.store is None or attempt == RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
            src = sources(src.store, src.table)
    raise AssertionError("unreachable")


def _read_once(src: Sources, schema: pa.Schema, filters: dict[str, list[str] | None]) -> pa.Table:
    parts = []
    if src.per_trial:
        parts.append(_read(src.per_trial, schema, filters))
    if src.compacted:
        keep = ~ds.field("trial_id").isin(sorted(src.shadowed)) if src.shadowed else None
        parts.append(_read(src.compacted, schema, filters, keep))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _read(files: list[Path], schema: pa.Schema, filters: dict[str, list[str] | None],
          extra: ds.Expression | None = None) -> pa.Table:
    expr = extra
    for col, values in filters.items():
        if values is not None and col in schema.names:
            term = ds.field(col).isin(values)
            expr = term if expr is None else expr & term
    try:
        dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
        return dataset.to_table(filter=expr)
    except (pa.ArrowException, OSError) as err:
        gone = [f for f in files if not f.exists()]
        if gone:
            raise Vanished(f"file vanished while reading the store: {gone[0]}") from err
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
    src = sources(store, "trials")
    if not src.files:
        frame = TRIALS_SCHEMA.empty_table().to_pandas()
        frame["variant"] = pd.Series(dtype=str)
        return frame
    table = _read_sources(src, TRIALS_SCHEMA, {"study": _as_list(study), "stage": _as_list(stage),
                                         "dataset": _as_list(dataset)})
    frame = table.to_pandas()
    # A trial rewritten by the driver (running -> completed) keeps its last row.
    frame = frame.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
    frame["variant"] = variant_column(frame["method"], frame["distribution"])
    return frame


def load_weights(store: str | Path) -> pd.DataFrame:
    """Effective per-epoch mean task weights (trial_id, epoch, task, weight); empty if absent."""
    src = sources(store, "weights")
    if not src.files:
        return WEIGHTS_SCHEMA.empty_table().to_pandas()
    return _read_sources(src, WEIGHTS_SCHEMA, {}).to_pandas()


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
    src = sources(store, "metrics")
    if not src.files:
        raise AnalysisError(f"no metrics Parquet files in {store}")
    filters = {"study": _as_list(study), "stage": _as_list(stage), "dataset": _as_list(dataset)}
    table = _read_sources(src, METRICS_SCHEMA, filters)
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


def read_metrics(store: str | Path, study: Filter = None, stage: Filter = None, dataset: Filter = None,
                 split: Filter = None) -> pa.Table:
    """The metric rows of a store as one Arrow table, read through the store's sources: per-trial and
    compacted files, each trial once, filters pushed into the scan (empty table when there are none)."""
    src = sources(store, "metrics")
    filters = {"study": _as_list(study), "stage": _as_list(stage), "dataset": _as_list(dataset),
               "split": _as_list(split)}
    return _read_sources(src, METRICS_SCHEMA, filters)


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


# --- columnar reading (DuckDB) ------------------------------------------------------------------------------
def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def connect_metrics(store: str | Path, study: Filter = None, dataset: Filter = None,
                    memory_limit: str = "2GB", materialize: bool = False
                    ) -> tuple["duckdb.DuckDBPyConnection", Sources]:  # noqa: F821
    """A DuckDB connection with a view ``m`` over the store's metric rows (per-trial and compacted files,
    each trial once), the study / dataset filters pushed into the Parquet scan. Nothing is read yet, unless
    ``materialize``: then the per-trial files (many small ones: opening each costs more than its rows) are
    read once into a temporary table (spilled to disk beyond ``memory_limit``) for a caller that queries
    ``m`` several times; compacted files are always scanned in place."""
    import shutil
    import tempfile
    import weakref

    import duckdb

    src = sources(store, "metrics")
    if not src.files:
        raise AnalysisError(f"no metrics Parquet files in {store}")
    spill = tempfile.mkdtemp(prefix="litmus-duckdb-")
    con = duckdb.connect(config={"threads": 2, "memory_limit": memory_limit, "temp_directory": spill,
                                 "preserve_insertion_order": False})
    con.execute("SET enable_progress_bar = false")  # a progress bar costs time and goes to the user's terminal
    weakref.finalize(con, shutil.rmtree, spill, True)  # the spill dir goes with the connection
    where = []
    for col, values in (("study", _as_list(study)), ("dataset", _as_list(dataset))):
        if values is not None:
            where.append(f"{col} IN (" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")")
    cols = ", ".join(METRICS_SCHEMA.names)
    scan = lambda files, w: (f"SELECT {cols} FROM read_parquet({_sql_list(files)})"  # noqa: E731
                             + (" WHERE " + " AND ".join(w) if w else ""))
    selects, setup = [], []
    if src.per_trial:
        if materialize and len(src.per_trial) > 1:
            setup.append(f"CREATE TEMP TABLE per_trial AS {scan(src.per_trial, where)}")
            selects.append(f"SELECT {cols} FROM per_trial")
        else:
            selects.append(scan(src.per_trial, where))
    if src.compacted:
        extra = []
        if src.shadowed:
            con.register("shadowed_ids", pd.DataFrame({"trial_id": sorted(src.shadowed)}))
            extra = ["trial_id NOT IN (SELECT trial_id FROM shadowed_ids)"]
        selects.append(scan(src.compacted, where + extra))
    try:
        for sql in setup:
            con.execute(sql)
        con.execute("CREATE VIEW m AS " + " UNION ALL ".join(selects))
    except duckdb.Error as err:
        con.close()
        raise AnalysisError(f"cannot read the store: {str(err).splitlines()[0]}") from err
    return con, src
