"""The Parquet results store (DESIGN.md schema): the driver is its single writer.

Layout under the store root::

    metrics/<trial_id>.parquet   one row per split x epoch x task x metric
    trials/<trial_id>.parquet    one row: the trial's config, status, timings, versions
    weights/<trial_id>.parquet   per-epoch mean effective task weights

Each trial's files are rewritten whole on every reported epoch through a
temporary file and an atomic rename, so a reader never sees a half-written
file, a restarted trial overwrites (never duplicates) its rows, and no
finished row is lost. Files are plain Parquet: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.schema import GROUP_COLUMNS, METRIC_KEY, METRICS_SCHEMA, TRIALS_SCHEMA, WEIGHTS_SCHEMA, Status

STATUSES = tuple(Status)
KEY = METRIC_KEY


class StoreError(ValueError):
    """The store path is unusable (not writable, not a store, corrupted file)."""


def _atomic_write(table: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_table(path: Path, **kwargs: Any) -> pa.Table:
    """Read one whole file through a single open handle: the writer may replace the file (atomic rename) at
    any moment, and ``pq.read_table(path)`` opens the path more than once (footer, then pages), so it can
    mix two versions and fail with a short page; one handle always reads one version."""
    with open(path, "rb") as f:
        return pq.read_table(f, **kwargs)


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
    def _path(self, kind: str, trial_id: str) -> Path:
        if not trial_id or "/" in trial_id or trial_id.startswith("."):
            raise StoreError(f"bad trial id {trial_id!r}")
        return self.root / kind / f"{trial_id}.parquet"

    # --- writers --------------------------------------------------------
    def write_metrics(self, group: dict[str, Any], rows: Iterable[dict[str, Any]]) -> int:
        """Replace the trial's metric rows by ``rows`` (each with split, epoch, task, metric, value, higher_is_better).

        Rows with the same key keep the last value, so a re-reported epoch never duplicates.
        Returns the number of rows written.
        """
        merged: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            merged[tuple(r[k] for k in KEY)] = r
        ordered = sorted(merged.values(), key=lambda r: (r["epoch"], r["split"], r["task"], r["metric"]))
        cols: dict[str, list[Any]] = {name: [group.get(name)] * len(ordered) for name, _ in GROUP_COLUMNS}
        for name in ("split", "epoch", "task", "metric", "value", "higher_is_better"):
            cols[name] = [r[name] for r in ordered]
        _atomic_write(pa.table(cols, schema=METRICS_SCHEMA), self._path("metrics", group["trial_id"]))
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
        rows = [(e, t, w) for e in sorted(per_epoch) for t, w in per_epoch[e].items()]
        if not rows:
            return
        table = pa.table(
            {"study": [study] * len(rows), "trial_id": [trial_id] * len(rows), "epoch": [r[0] for r in rows],
             "task": [r[1] for r in rows], "weight": [r[2] for r in rows]},
            schema=WEIGHTS_SCHEMA,
        )
        _atomic_write(table, self._path("weights", trial_id))

    # --- readers --------------------------------------------------------
    def trial_metrics(self, trial_id: str) -> list[dict[str, Any]]:
        """The trial's metric rows already in the store (for resuming a running trial)."""
        path = self._path("metrics", trial_id)
        if not path.exists():
            return []
        return _read_table(path, columns=list(KEY) + ["value", "higher_is_better"]).to_pylist()

    def trial_weights(self, trial_id: str) -> dict[int, dict[str, float]]:
        path = self._path("weights", trial_id)
        out: dict[int, dict[str, float]] = {}
        if path.exists():
            for r in _read_table(path).to_pylist():
                out.setdefault(r["epoch"], {})[r["task"]] = r["weight"]
        return out

    def trials(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every trial record (optionally of one study)."""
        files = sorted(p for p in (self.root / "trials").glob("*.parquet") if not p.name.startswith("."))
        if not files:
            return []
        try:
            table = pa.concat_tables([_read_table(p, schema=TRIALS_SCHEMA) for p in files])
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"corrupted trial record under {self.root / 'trials'}: {err}") from None
        rows = table.to_pylist()
        return [r for r in rows if study is None or r["study"] == study]

    def statuses(self, study: str | None = None) -> dict[str, str]:
        """trial_id -> status."""
        return {r["trial_id"]: r["status"] for r in self.trials(study)}
