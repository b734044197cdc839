"""Compaction: merge finished trials' per-trial files into partitioned files named by a manifest.

Many small files cost more than their rows. ``compact(store)`` (run by the
driver at the end of each stage, and by ``litmus compact STORE``) writes, for
every study x stage x dataset with newly finished trials, one file per table
(metrics: one per split) under a new generation folder
``compacted/g<N>/``; each new file holds the partition's old compacted rows
(minus trials that have a newer per-trial copy) and the new trials' rows.
Then it replaces ``compacted/manifest.json`` atomically (the commit point),
and only then removes the per-trial files and the files the manifest no
longer names. A kill at any moment leaves either the old manifest (new files
unnamed, hence unread; removed by the next compaction) or the new one (a
trial still having per-trial files is read once, from them: analysis/store.py).
Running trials are left alone.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from analysis.schema import COMPACTED_DIR, FINISHED, MANIFEST, MANIFEST_FORMAT, SCHEMAS, TABLES
from analysis.files import read_manifest, sources
from trainables import heap

from .atomic import write_json
from .store import Store

SPLIT_TABLES = ("metrics",)  # tables written one file per split


@dataclass
class Compaction:
    trials: int        # trials moved into compacted files by this call
    files: int         # per-trial files removed
    generation: int


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "_"


def compact(store: Store, hook=None) -> Compaction:
    """Compact every finished trial of ``store`` (see the module docstring). ``hook(step)``, for tests, is
    called between steps ("written", "committed") so that a kill can be placed there."""
    root = store.root
    cdir = root / COMPACTED_DIR
    cdir.mkdir(exist_ok=True)
    manifest = read_manifest(root) or {"format": MANIFEST_FORMAT, "generation": 0,
                                       "tables": {t: [] for t in TABLES}, "trials": []}
    _remove_unnamed(cdir, manifest)
    per_trial = sources(root, "trials").per_trial
    records = [r for batch in _scan(per_trial, SCHEMAS["trials"], ["trial_id", "study", "stage", "dataset", "status"])
               for r in batch.to_pylist()]
    finished = [r for r in records if r["status"] in FINISHED]
    if not finished:
        return Compaction(0, 0, manifest["generation"])
    gen = manifest["generation"] + 1
    gdir = f"g{gen:06d}"
    parts: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in finished:
        parts[(r["study"], r["stage"], r["dataset"])].append(r["trial_id"])
    moving = {r["trial_id"] for r in finished}
    tables = {t: list(manifest["tables"].get(t, [])) for t in TABLES}
    files = {(t, tid): store.files(t, tid) for t in TABLES for tid in moving}  # listed once: merged, then removed
    for (study, stage, dataset), ids in parts.items():
        key = {"study": study, "stage": stage, "dataset": dataset}
        for table in TABLES:
            old = [e for e in tables[table] if all(e.get(k) == v for k, v in key.items())]
            new = _merge_partition(cdir, gdir, table, key, old, [p for tid in ids for p in files[(table, tid)]],
                                   moving)
            tables[table] = [x for x in tables[table] if x not in old] + new
    _fsync_tree(cdir / gdir)
    if hook:
        hook("written")
    new = {"format": MANIFEST_FORMAT, "generation": gen, "tables": tables,
           "trials": sorted(set(manifest.get("trials", [])) | moving)}
    write_json(cdir / MANIFEST, new)  # the commit point
    if hook:
        hook("committed")
    removed = 0
    for (table, tid), paths in files.items():
        for p in paths:
            p.unlink(missing_ok=True)
            removed += 1
        d = root / table / tid
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    _remove_unnamed(cdir, new)
    heap.release_freed_heap()  # the scans' freed per-file state: glibc keeps it otherwise (trainables/heap.py)
    return Compaction(len(moving), removed, gen)


#: rows buffered before a row group is written (per partition and table; a flush splits them by split): with
#: one row group per trial part, a 5,000-trial file spent most of its bytes and read time in its footer
ROW_GROUP_ROWS = 1 << 17
ROW_GROUP_BYTES = 64 << 20  # ... or this many bytes of buffered Arrow data, whichever comes first


class _PartitionWriter:
    """One partition of one table (one file per split for metrics), written in large row groups: rows are
    buffered and flushed as one row group per split once ``ROW_GROUP_ROWS`` rows (or ``ROW_GROUP_BYTES``)
    are held, so memory stays bounded and a file has few row groups whatever the number of trials."""

    def __init__(self, cdir: Path, gdir: str, table: str, key: dict[str, str]) -> None:
        self.cdir, self.gdir, self.table, self.key = cdir, gdir, table, key
        self.schema = SCHEMAS[table]
        self.writers: dict[str, tuple[pq.ParquetWriter, str, list[int]]] = {}
        self.buffer: list[pa.Table] = []
        self.rows = self.nbytes = 0

    def add(self, tbl: pa.Table) -> None:
        """Buffer ``tbl`` (in the table's schema: read through it)."""
        if not tbl.num_rows:
            return
        self.buffer.append(tbl)
        self.rows += tbl.num_rows
        self.nbytes += tbl.nbytes
        if self.rows >= ROW_GROUP_ROWS or self.nbytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        tbl = pa.concat_tables(self.buffer).select(self.schema.names).cast(self.schema).combine_chunks()
        self.buffer, self.rows, self.nbytes = [], 0, 0
        if self.table in SPLIT_TABLES:
            groups = [(s, tbl.filter(pa.compute.equal(tbl.column("split"), s)))
                      for s in pa.compute.unique(tbl.column("split")).to_pylist()]
        else:
            groups = [("", tbl)]
        for split, sub in groups:
            if not sub.num_rows:
                continue
            if split not in self.writers:
                rel = f"{self.gdir}/" + "/".join(_safe(self.key[k]) for k in ("study", "stage", "dataset")) + \
                    f"/{self.table}" + (f"-{_safe(split)}" if split else "") + ".parquet"
                (self.cdir / rel).parent.mkdir(parents=True, exist_ok=True)
                self.writers[split] = (pq.ParquetWriter(self.cdir / rel, self.schema, compression="zstd"), rel, [0])
            w, _, n = self.writers[split]
            w.write_table(sub, row_group_size=max(ROW_GROUP_ROWS, sub.num_rows))  # one row group per flush
            n[0] += sub.num_rows

    def close(self) -> list[dict]:
        """Flush, close the files and return their manifest entries."""
        self.flush()
        out = []
        for split, (w, rel, n) in self.writers.items():
            w.close()
            out.append(dict(self.key, table=self.table, file=rel, rows=n[0], **({"split": split} if split else {})))
        return out


def _merge_partition(cdir: Path, gdir: str, table: str, key: dict[str, str], old: list[dict], files: list[Path],
                     moving: set[str]) -> list[dict]:
    """Write one partition of one table (one file per split for metrics): its old compacted rows minus the
    trials being replaced, then the new trials' per-trial ``files``, streamed into large row groups. Returns the
    manifest entries."""
    schema = SCHEMAS[table]
    out = _PartitionWriter(cdir, gdir, table, key)
    for e in old:
        scanner = pads.dataset(str(cdir / e["file"]), schema=schema, format="parquet").scanner(
            filter=~pads.field("trial_id").isin(sorted(moving)), batch_size=1 << 20)
        for batch in scanner.to_batches():
            out.add(pa.Table.from_batches([batch], schema=schema))
    for batch in _scan(files, schema):  # every per-trial file of the partition, each opened once
        out.add(pa.Table.from_batches([batch], schema=schema))
    return out.close()


#: per-trial files read by one dataset scan: a scan holds some state per file until it ends (~40 KB,
#: glibc memory that stays in the process after), so one scan over 20,000 files took 0.8 GB per table
#: (issue 13: the driver's peak at a 20,000-trial stage's end); scans of this many files keep it bounded
FILES_PER_SCAN = 256


def _scan(files: list[Path], schema: pa.Schema, columns: list[str] | None = None):
    """The record batches of ``files`` (read through ``schema``), in scans of :data:`FILES_PER_SCAN` files
    (threaded reads within each)."""
    for i in range(0, len(files), FILES_PER_SCAN):
        chunk = [str(p) for p in files[i:i + FILES_PER_SCAN]]
        yield from pads.dataset(chunk, schema=schema, format="parquet").to_batches(columns=columns,
                                                                                    batch_size=1 << 20)


def _fsync_tree(d: Path) -> None:
    for f in d.rglob("*.parquet"):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _remove_unnamed(cdir: Path, manifest: dict) -> None:
    """Remove compacted files the manifest does not name (a killed compaction's, or replaced ones)."""
    named = {e["file"] for t in manifest["tables"].values() for e in t}
    for g in cdir.glob("g*"):
        if not g.is_dir():
            continue
        for f in g.rglob("*.parquet"):
            if str(f.relative_to(cdir)) not in named:
                f.unlink()
        if not any(p.is_file() for p in g.rglob("*")):
            shutil.rmtree(g, ignore_errors=True)
