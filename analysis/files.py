"""Where a store's rows are: per-trial files, compacted files and their manifest (docs/store.md).

The layout half of the reader (analysis/store.py): file names and the manifest
only, with pyarrow for a footer at most. The orchestrator's fast paths
(``litmus status``, the resume of a study) use it without loading pandas.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from litmus.errors import StoreWarning

from .errors import AnalysisError
from .schema import COMPACTED_DIR, MANIFEST, MANIFEST_FORMAT, SCHEMAS, TABLES


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
