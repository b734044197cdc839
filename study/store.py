"""The Parquet results store (docs/store.md; the contract is analysis/schema.py): the driver is its single writer.

Layout under the store root::

    metrics/<trial_id>/<first>.parquet          a trial's metric rows from epoch first (one part per flush)
    weights/<trial_id>/<first>.parquet          per-epoch mean effective task weights, same parts
    trials/<trial_id>.parquet                   one row: the trial's config, status, timings, versions
    compacted/manifest.json + compacted/g*/...  finished trials merged by study/compact.py

Epoch rows are appended as parts (never rewritten: a trial of E epochs costs
O(E)); every file goes through a temporary file and an atomic rename, so a
reader never sees a half-written file. A part whose epochs are already stored
(a restarted trial) first drops the stored rows of those epochs, so rows are
never duplicated and no finished row is lost. Files are plain Parquet:
nothing is unpickled. Older stores (``metrics/<trial_id>.parquet``) read the same.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from analysis.errors import AnalysisError
from analysis.schema import GROUP_COLUMNS, METRIC_KEY, METRICS_SCHEMA, TRIALS_SCHEMA, WEIGHTS_SCHEMA, Status
from analysis.files import sources

from litmus.errors import StoreError  # noqa: F401 - part of this module's interface

STATUSES = tuple(Status)
KEY = METRIC_KEY


def _atomic_write(table: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_table(path: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read one file (``columns`` of it, in ``schema``'s types; a column an older file lacks is null) through a
    single open handle: the writer may replace the file (atomic rename) at any moment, and
    ``pq.read_table(path)`` opens the path more than once (footer, then pages), so it can mix two versions and
    fail with a short page; one handle always reads one version. Plain ``ParquetFile`` reads, without
    pyarrow.dataset (which loads pandas): the light paths (``litmus status``, a resume) use this."""
    cols = list(columns or schema.names)
    with open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        have = set(pf.schema_arrow.names)
        t = pf.read(columns=[c for c in cols if c in have])
    return pa.table([t.column(c).cast(schema.field(c).type) if c in have else
                     pa.nulls(t.num_rows, schema.field(c).type) for c in cols],
                    schema=pa.schema([schema.field(c) for c in cols]))


def _max_epoch(path: Path) -> int:
    """The largest epoch in a file, from its footer's statistics (the column when they are missing)."""
    with open(path, "rb") as f:
        meta = pq.ParquetFile(f).metadata
        if "epoch" not in meta.schema.names:  # a table without epochs (a trial record)
            return 1 << 62
        idx = meta.schema.names.index("epoch")
        best = 0
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(idx).statistics
            if st is None or not st.has_min_max:
                f.seek(0)
                return int(pa.compute.max(pq.read_table(f, columns=["epoch"]).column("epoch")).as_py() or 0)
            best = max(best, int(st.max))
        return best


class Store:
    """Writer (and small reader) of a results store rooted at ``root``."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        if create:
            try:
                for sub in ("metrics", "trials", "weights"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
                # a unique probe file: several processes (a driver, a poller) may open the same store at once
                fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=self.root)
                os.close(fd)
                os.unlink(probe)
            except OSError as err:
                raise StoreError(f"store path {self.root} is not writable: {err.strerror or err}") from None
        elif not (self.root / "metrics").is_dir():
            raise StoreError(f"{self.root} is not a litmus store (no metrics/ folder)")

    # --- paths ----------------------------------------------------------
    def _check_id(self, trial_id: str) -> None:
        if not trial_id or "/" in trial_id or trial_id.startswith("."):
            raise StoreError(f"bad trial id {trial_id!r}")

    def _path(self, kind: str, trial_id: str) -> Path:
        self._check_id(trial_id)
        return self.root / kind / f"{trial_id}.parquet"

    def parts(self, kind: str, trial_id: str) -> list[tuple[int, int, Path]]:
        """(first epoch, last epoch, path) of a trial's per-trial files, by first epoch. Parts are named by
        their first epoch; a part's last epoch is the next part's first - 1, the final part's is read from
        its footer (one small read). A legacy whole-trial file ``<table>/<trial_id>.parquet`` starts at 1."""
        found = self._files(kind, trial_id)
        out = []
        for i, (first, path) in enumerate(found):
            last = found[i + 1][0] - 1 if i + 1 < len(found) else _max_epoch(path)
            out.append((first, last, path))
        return out

    def files(self, kind: str, trial_id: str) -> list[Path]:
        """A trial's per-trial files of one table, by first epoch (names only: nothing is opened)."""
        return [path for _, path in self._files(kind, trial_id)]

    def _files(self, kind: str, trial_id: str) -> list[tuple[int, Path]]:
        self._check_id(trial_id)
        found: list[tuple[int, Path]] = []
        legacy = self.root / kind / f"{trial_id}.parquet"
        if legacy.exists():
            found.append((1, legacy))
        d = self.root / kind / trial_id
        if d.is_dir():
            for f in d.iterdir():
                stem = f.name[: -len(".parquet")] if f.name.endswith(".parquet") and not f.name.startswith(".") else ""
                if stem.isdigit():
                    found.append((int(stem), f))
        found.sort()
        return found

    # --- writers --------------------------------------------------------
    def _append(self, kind: str, trial_id: str, table: pa.Table, schema: pa.Schema) -> None:
        """Store ``table`` (some epochs of one trial) as a part named by its first epoch. Stored rows of those
        epochs or later are replaced (a restarted trial re-reports them); earlier epochs stay. The part that
        holds the first re-reported epoch is replaced in place, in one atomic rename (a reader or a crash
        sees its old rows or the new ones, never both, never neither); later stored parts are removed first
        (a restart over several flushes: a reader may briefly miss those epochs, never count them twice).
        A compacted trial resumed at a later epoch first gets its earlier rows copied out of the compacted
        files, as its per-trial copy then replaces the compacted one.
        """
        if not table.num_rows:
            return
        table = table.cast(schema)
        first = pa.compute.min(table.column("epoch")).as_py()
        parts = self.parts(kind, trial_id)
        over = [p for p in parts if p[1] >= first]
        if not parts and first > 1 and trial_id in self.compacted_ids():
            old = self._compacted_rows(kind, trial_id, schema)
            if old is not None:
                table = pa.concat_tables([old.filter(pa.compute.less(old.column("epoch"), first)).cast(schema),
                                          table])
                first = pa.compute.min(table.column("epoch")).as_py()
        d = self.root / kind / trial_id
        if not over or over[0][0] > first:
            for _, _, path in over:
                path.unlink(missing_ok=True)
            d.mkdir(exist_ok=True)
            _atomic_write(table, d / f"{first:06d}.parquet")
            return
        head = over[0][2]
        if over[0][0] < first:  # the part straddles: keep its earlier epochs
            kept = _read_table(head, schema)
            kept = kept.filter(pa.compute.less(kept.column("epoch"), first))
            table = pa.concat_tables([kept.cast(schema), table])
        for _, _, path in over[1:]:
            path.unlink(missing_ok=True)
        if head.parent != d:  # a legacy whole-trial file: its rows move into a part, then it goes
            d.mkdir(exist_ok=True)
            _atomic_write(table, d / f"{over[0][0]:06d}.parquet")
            head.unlink()
            return
        _atomic_write(table, head)

    def write_metrics(self, group: dict[str, Any], rows: Iterable[dict[str, Any]]) -> int:
        """Append the trial's metric rows of some epochs (each row with split, epoch, task, metric, value,
        higher_is_better) as one part; stored rows of those epochs or later are replaced.

        Rows with the same key keep the last value. Returns the number of rows written.
        """
        merged: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            merged[tuple(r[k] for k in KEY)] = r
        ordered = sorted(merged.values(), key=lambda r: (r["epoch"], r["split"], r["task"], r["metric"]))
        cols: dict[str, list[Any]] = {name: [group.get(name)] * len(ordered) for name, _ in GROUP_COLUMNS}
        cols["stage"] = [str(group["stage"])] * len(ordered)
        for name in ("split", "epoch", "task", "metric", "value", "higher_is_better"):
            cols[name] = [r[name] for r in ordered]
        self._append("metrics", group["trial_id"], pa.table(cols, schema=METRICS_SCHEMA), METRICS_SCHEMA)
        return len(ordered)

    def write_trial(self, record: dict[str, Any]) -> None:
        """Write (replace) the trial's one-row record; ``config`` and ``versions`` may be dicts (stored as JSON)."""
        rec = dict(record)
        for key in ("config", "versions"):
            if not isinstance(rec.get(key), (str, type(None))):
                rec[key] = json.dumps(rec[key], sort_keys=True, default=str)
        if rec.get("status") not in STATUSES:
            raise StoreError(f"trial status must be one of {[str(s) for s in STATUSES]}, got {rec.get('status')!r}")
        rec["status"] = str(Status(rec["status"]))
        rec["stage"] = str(rec["stage"])
        row = {name: [rec.get(name)] for name in TRIALS_SCHEMA.names}
        _atomic_write(pa.table(row, schema=TRIALS_SCHEMA), self._path("trials", rec["trial_id"]))

    def write_weights(self, study: str, trial_id: str, per_epoch: dict[int, dict[str, float]]) -> None:
        """Append per-epoch mean task weights of some epochs (stored weights of those epochs or later are replaced)."""
        rows = [(e, t, w) for e in sorted(per_epoch) for t, w in per_epoch[e].items()]
        if not rows:
            return
        table = pa.table(
            {"study": [study] * len(rows), "trial_id": [trial_id] * len(rows), "epoch": [r[0] for r in rows],
             "task": [r[1] for r in rows], "weight": [r[2] for r in rows]},
            schema=WEIGHTS_SCHEMA,
        )
        self._append("weights", trial_id, table, WEIGHTS_SCHEMA)

    # --- readers --------------------------------------------------------
    def compacted_ids(self) -> set[str]:
        """Trial ids held by compacted files (from the manifest; cached per manifest version)."""
        from analysis.files import read_manifest

        path = self.root / "compacted" / "manifest.json"
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return set()
        if getattr(self, "_compacted", (None, None))[0] != stamp:
            try:
                manifest = read_manifest(self.root)
            except AnalysisError as err:
                raise StoreError(str(err)) from None
            self._compacted = (stamp, set(manifest.get("trials", [])) if manifest else set())
        return self._compacted[1]

    def _compacted_rows(self, kind: str, trial_id: str, schema: pa.Schema) -> pa.Table | None:
        src = sources(self.root, kind)
        if not src.compacted:
            return None
        import pyarrow.dataset as pads  # a filtered scan over the compacted files (loads pandas: not on light paths)

        return pads.dataset([str(f) for f in src.compacted], schema=schema, format="parquet").to_table(
            filter=pads.field("trial_id") == trial_id)

    def _trial_table(self, kind: str, trial_id: str, schema: pa.Schema, columns: list[str]) -> pa.Table | None:
        for attempt in range(5):  # a part renamed or removed between listing and reading: list again
            try:
                return self._trial_table_once(kind, trial_id, schema, columns)
            except FileNotFoundError:
                if attempt == 4:
                    raise
        return None

    def _trial_table_once(self, kind: str, trial_id: str, schema: pa.Schema, columns: list[str]) -> pa.Table | None:
        parts = self.parts(kind, trial_id)
        if parts:
            return pa.concat_tables([_read_table(p, schema, columns) for _, _, p in parts])
        if trial_id in self.compacted_ids():
            t = self._compacted_rows(kind, trial_id, schema)
            return t.select(columns) if t is not None else None
        return None

    def trial_metrics(self, trial_id: str) -> list[dict[str, Any]]:
        """The trial's metric rows already in the store (per-trial parts, else its compacted rows)."""
        t = self._trial_table("metrics", trial_id, METRICS_SCHEMA, list(KEY) + ["value", "higher_is_better"])
        return t.to_pylist() if t is not None else []

    def stored_epochs(self, trial_id: str) -> int:
        """The last epoch the store holds for a trial (0 if none): one footer read when not compacted."""
        parts = self.parts("metrics", trial_id)
        if parts:
            return parts[-1][1]
        return max((r["epoch"] for r in self.trial_metrics(trial_id)), default=0)

    def trial_weights(self, trial_id: str) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        t = self._trial_table("weights", trial_id, WEIGHTS_SCHEMA, ["epoch", "task", "weight"])
        if t is not None:
            for r in t.to_pylist():
                out.setdefault(r["epoch"], {})[r["task"]] = r["weight"]
        return out

    def trials(self, study: str | None = None, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Every trial record (optionally of one study; optionally only some columns), each trial once."""
        for attempt in range(5):  # a record replaced or compacted between listing and reading: list again
            try:
                return self._trials_once(study, columns)
            except FileNotFoundError:
                if attempt == 4:
                    raise
        return []

    def _trials_once(self, study: str | None, columns: list[str] | None) -> list[dict[str, Any]]:
        try:
            src = sources(self.root, "trials")
        except AnalysisError as err:
            raise StoreError(str(err)) from None
        cols = columns or TRIALS_SCHEMA.names
        read = cols if study is None or "study" in cols else [*cols, "study"]
        out: list[dict[str, Any]] = []
        try:  # one handle per file (_read_table): the driver may replace a record meanwhile
            for files, skip in ((src.per_trial, frozenset()), (src.compacted, src.shadowed)):
                for f in files:  # filtered in Python: pyarrow's compute on scalars would load pandas
                    for r in _read_table(f, TRIALS_SCHEMA, read).to_pylist():
                        if (study is None or r["study"] == study) and r["trial_id"] not in skip:
                            out.append(r if read is cols else {c: r[c] for c in cols})
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as err:
            if isinstance(err, OSError) and "No such file" in str(err):
                raise FileNotFoundError(str(err)) from err
            raise StoreError(f"corrupted trial record under {self.root / 'trials'}: {err}") from None
        return out

    def statuses(self, study: str | None = None) -> dict[str, str]:
        """trial_id -> status (reads two columns of the trials table, never the metrics)."""
        return {r["trial_id"]: r["status"] for r in self.trials(study, columns=["trial_id", "status"])}
