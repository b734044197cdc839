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

import json
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from litmus.errors import StoreWarning, Vanished  # noqa: F401 - part of this module's interface

from .errors import AnalysisError
from .naming import variant_column, variant_name
from .schema import (COMPACTED_DIR, MANIFEST, MANIFEST_FORMAT, METRICS_SCHEMA, SCHEMAS, TABLES, TRIALS_SCHEMA,
                     WEIGHTS_SCHEMA, Status)

# Columns that must never be null in the metrics table (distribution may be).
REQUIRED_METRICS = [c for c in METRICS_SCHEMA.names if c not in ("distribution", "value")]
CATEGORICAL = ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution",
               "split", "task", "metric"]
USABLE_STATUS = (str(Status.COMPLETED), "unknown")

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


#: a per-trial file: ``<trial id>.parquet`` or ``<trial id>/<first epoch>.parquet`` (study/ids.py: stage initial
#: and 15 hex digits)
_TRIAL_FILE = re.compile(r"^[0-9a-z][0-9a-f]{15}(\.parquet|/[^/]+\.parquet)$")


def _litmus_files(table_dir: Path, table: str) -> list[Path]:
    """The table's per-trial files. A file not named like one (``<trial id>.parquet``, ``<trial id>/<part>``)
    has its footer read: without the table's columns it is named in a warning and left out (a file of another
    schema would otherwise be read as rows of nulls, or skipped without a word)."""
    needed = set(SCHEMAS[table].names) - {"family", "node", "gpu_ids", "replicate"}  # older stores lack these
    out = []
    for f in _parquet_files(table_dir):
        if not _TRIAL_FILE.match(f.relative_to(table_dir).as_posix()):
            try:
                names = set(pq.read_schema(f).names)
            except (pa.ArrowException, OSError):
                names = None  # unreadable: kept, so that reading it fails with a message naming the file
            if names is not None and not needed <= names:
                shown = f"{', '.join(sorted(names)[:6])}{' ...' if len(names) > 6 else ''}"
                warnings.warn(f"{f}: not a litmus {table} file (columns {shown}); left out", StoreWarning,
                              stacklevel=2)
                continue
        out.append(f)
    return out


def read_manifest(root: Path) -> dict | None:
    """The compaction manifest of a store (None when never compacted); its files must all exist."""
    path = root / COMPACTED_DIR / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        tables = manifest["tables"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(tables, dict):
            raise ValueError(f"unknown manifest format {manifest.get('format')!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise AnalysisError(f"unreadable compaction manifest {path}: {err}") from None
    missing = [str(root / COMPACTED_DIR / e["file"]) for t in tables.values() for e in t
               if not (root / COMPACTED_DIR / e["file"]).is_file()]
    if missing:
        raise AnalysisError(f"the compaction manifest {path} names missing files: {', '.join(missing)}")
    return manifest


def trial_of(path: Path, table_dir: Path) -> str:
    """The trial id a per-trial file belongs to (``<id>.parquet`` or ``<id>/<part>.parquet``)."""
    first = path.relative_to(table_dir).parts[0]
    return first[: -len(".parquet")] if first.endswith(".parquet") else first


@dataclass(frozen=True)
class Sources:
    """Where one table's rows are: per-trial files, compacted files, and the trials whose compacted rows
    are skipped because a per-trial copy exists (``shadowed``: read once, from the per-trial copy)."""

    table: str
    per_trial: list[Path] = field(default_factory=list)
    compacted: list[Path] = field(default_factory=list)
    shadowed: frozenset[str] = frozenset()
    compacted_trials: int = 0
    store: Path | None = None  # the store they were listed from (listed again when a file vanished)

    @property
    def files(self) -> list[Path]:
        return self.per_trial + self.compacted


def per_trial_ids(root: Path) -> set[str]:
    """Trial ids with a per-trial file in any table (names only: nothing is opened)."""
    out: set[str] = set()
    for table in TABLES:
        d = root / table
        if d.is_dir():
            out.update(trial_of(f, d) for f in _parquet_files(d))
    return out


def sources(store: str | Path, table: str) -> Sources:
    """Files of ``table`` (metrics, trials, weights) for a store dir, a dataset dir or one file."""
    path = Path(store)
    if not path.exists():
        raise AnalysisError(f"store not found: {path}")
    if path.is_file():
        return Sources(table, [path] if table == "metrics" else [])
    is_store = any((path / t).is_dir() for t in TABLES) or (path / COMPACTED_DIR).is_dir()
    if not is_store:
        return Sources(table, _parquet_files(path) if table == "metrics" else [])
    per_trial = _litmus_files(path / table, table) if (path / table).is_dir() else []
    manifest = read_manifest(path)
    if manifest is None:
        return Sources(table, per_trial, store=path)
    entries = manifest["tables"].get(table, [])
    compacted = [path / COMPACTED_DIR / e["file"] for e in entries]
    in_compacted = set(manifest.get("trials", []))
    shadowed = frozenset(per_trial_ids(path) & in_compacted)
    return Sources(table, per_trial, compacted, shadowed, len(in_compacted), path)


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
