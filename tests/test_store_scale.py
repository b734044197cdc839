"""The store at scale: columnar selection equals the in-memory one, append-only parts, compaction (also killed
midway), a trial held twice read once, a manifest naming missing files refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import AnalysisError, load, select
from analysis.select import store_selection
from analysis.store import plain_strings
from analysis.synthetic import SyntheticStudy, metrics_frame, trials_frame
from study.compact import compact
from study.lock import LockError
from study.recorder import TrialRecorder
from study.store import Store

SPEC = SyntheticStudy(effects={"a": {"ew": 0.0, "rlw:normal": 1.0, "uw": -1.0}, "b": {"ew": 0.0, "rlw:normal": 0.5}},
            seeds=[0, 1, 2], epochs=5, status={("a", "uw", 1): "failed"})


def write_like_driver(root: Path, spec: SyntheticStudy = SPEC) -> Store:
    """The synthetic study written through the store's own writer: one part per epoch, one record per trial.
    SPEC's store is written once per module (``written``: 90 writes) and copied for each test (``fresh``)."""
    store = Store(root)
    m = metrics_frame(spec)
    trials = trials_frame(spec).drop(columns="_effect")
    for rec in trials.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}  # NaN -> null
        rows = m[m["trial_id"] == rec["trial_id"]]
        grp = {k: rec[k] for k in ("study", "stage", "trial_id", "dataset", "arch", "method", "distribution", "seed")}
        for epoch, g in rows.groupby("epoch"):
            store.write_metrics(grp, g[["split", "epoch", "task", "metric", "value", "higher_is_better"]]
                                .to_dict("records"))
        store.write_trial(rec)
    return store


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return write_like_driver(tmp_path_factory.mktemp("written") / "s").root


def fresh(written: Path, tmp_path: Path) -> Store:
    """A copy of SPEC's store as the driver wrote it (every file byte for byte), for one test to change."""
    shutil.copytree(written, tmp_path / "s")
    return Store(tmp_path / "s")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["trial_id", "split", "epoch", "task", "metric"]
    keep = [c for c in cols if c in frame.columns]
    frame = plain_strings(frame)  # categories come in reading order: compare plain values
    return frame.sort_values(keep).reset_index(drop=True)


@pytest.mark.parametrize("epoch", ["best-val", "last", 3])
def test_columnar_selection_equals_in_memory_selection(written, tmp_path, epoch):
    store = fresh(written, tmp_path)
    expected = _sorted(select(load(store.root), epoch=epoch))
    got = store_selection(store.root, epoch=epoch)
    assert len(expected) == (3 * 3 + 2 * 3 - 1) * 6  # 14 usable trials x 6 metrics (the failed trial left out)
    pd.testing.assert_frame_equal(expected, _sorted(got.selected[expected.columns]), check_dtype=False)
    assert set(got.index["status"]) == {"completed", "failed"}


def test_parts_are_appended_and_a_restarted_trial_replaces_its_epochs(tmp_path):
    store = Store(tmp_path / "s")
    cfg = {"dataset": "d", "arch": "hps", "method": "ew", "seed": 0, "epochs": 4}
    row = lambda v: [{"split": "val", "task": "t", "metric": "acc", "value": v, "higher_is_better": True}]  # noqa: E731
    rec = TrialRecorder(store, "st", "final", "f1", cfg, flush_every=0)
    for e in (1, 2, 3):
        rec.epoch(e, row(float(e)), {"t": 1.0}, {})
    assert [(a, b, p.name) for a, b, p in store.parts("metrics", "f1")] == [
        (1, 1, "000001.parquet"), (2, 2, "000002.parquet"), (3, 3, "000003.parquet")]  # appended, never rewritten
    assert store.statuses() == {"f1": "running"}
    # the trial restarts from epoch 2 (a retry from a checkpoint): epochs 2.. are replaced, epoch 1 stays
    rec2 = TrialRecorder(store, "st", "final", "f1", cfg, flush_every=0)
    for e in (2, 3, 4):
        rec2.epoch(e, row(10.0 * e), {"t": 2.0}, {})
    rec2.finish("completed")
    got = sorted((r["epoch"], r["value"]) for r in store.trial_metrics("f1"))
    assert got == [(1, 1.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert sorted(store.trial_weights("f1")) == [1, 2, 3, 4]
    assert store.statuses() == {"f1": "completed"}
    # buffered: with a long flush interval only the last epoch and the end write (one part, one record)
    rec3 = TrialRecorder(store, "st", "final", "f2", cfg, flush_every=3600)
    for e in (1, 2, 3, 4):
        rec3.epoch(e, row(float(e)), None, {})
    assert [(a, b) for a, b, _ in store.parts("metrics", "f2")] == [(1, 4)]
    assert not (store.root / "trials" / "f2.parquet").exists()  # no "running" record for a trial that just ended
    rec3.finish("completed")
    assert store.statuses()["f2"] == "completed"


# run in a fresh interpreter that imports only the compaction (a spawned multiprocessing child would import this
# test module, hence the whole analysis package and pandas: 5 s of CPU per kill instead of 2)
COMPACT_AND_DIE = """
import os, signal, sys
from study.compact import compact
from study.store import Store

def hook(at):
    if at == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

compact(Store(sys.argv[1]), hook=hook)
"""


@pytest.mark.parametrize("step", ["written", "committed"])
def test_a_kill_during_compaction_leaves_every_trial_once(written, tmp_path, step):
    store = fresh(written, tmp_path)
    before = _sorted(load(store.root).drop(columns=["status"]))
    statuses = store.statuses()
    p = subprocess.run([sys.executable, "-c", COMPACT_AND_DIE, str(store.root), step], timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == -signal.SIGKILL
    # killed after writing the new files (old manifest: new files unread) or after the commit (per-trial
    # files still there: each trial read once, from them)
    after = _sorted(load(store.root).drop(columns=["status"]))
    pd.testing.assert_frame_equal(before, after, check_categorical=False)
    assert store.statuses() == statuses
    assert len(store.trials()) == len(statuses)
    sel = store_selection(store.root)
    if step == "committed":
        assert any("both a compacted and a per-trial copy" in n for n in sel.notes)
    # a new compaction finishes the job: no per-trial file left, same rows, a new generation only
    done = compact(store)
    assert done.trials == len(statuses)
    assert not [p for p in (store.root / "metrics").rglob("*.parquet")]
    pd.testing.assert_frame_equal(before, _sorted(load(store.root).drop(columns=["status"])), check_categorical=False)
    gens = sorted(d.name for d in (store.root / "compacted").iterdir() if d.is_dir())
    assert gens == [f"g{done.generation:06d}"]
    assert store.statuses() == statuses
    # resume still knows each trial's rows (read back from the compacted files)
    tid = next(iter(statuses))
    assert max(r["epoch"] for r in store.trial_metrics(tid)) == SPEC.epochs


def test_compaction_writes_large_row_groups_and_keeps_every_row(written, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import study.compact as compact_mod

    store = fresh(written, tmp_path)  # 15 trials, one metrics part per epoch (75 parts per split)
    before = _sorted(load(store.root).drop(columns=["status"]))
    monkeypatch.setattr(compact_mod, "ROW_GROUP_ROWS", 200)
    compact(store)
    after = _sorted(load(store.root).drop(columns=["status"]))
    pd.testing.assert_frame_equal(before, after, check_categorical=False)
    manifest = json.loads((store.root / "compacted" / "manifest.json").read_text())
    groups = {}
    for e in manifest["tables"]["metrics"]:
        meta = pq.ParquetFile(store.root / "compacted" / e["file"]).metadata
        assert meta.num_rows == e["rows"]
        groups[(e["dataset"], e["split"])] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    # a row group per flush of >= 200 buffered rows (all splits of the partition together), not one per trial
    # part (trials x epochs of the dataset)
    for (dataset, split), sizes in groups.items():
        part = after[after.dataset == dataset]
        assert sum(sizes) == (part.split == split).sum()
        assert len(sizes) <= -(-len(part) // 200) < part.trial_id.nunique() * SPEC.epochs
    trials = manifest["tables"]["trials"]
    assert all(pq.ParquetFile(store.root / "compacted" / e["file"]).metadata.num_row_groups == 1 for e in trials)


def test_compaction_reads_per_trial_files_in_bounded_scans_and_keeps_every_row(written, tmp_path, monkeypatch):
    """A dataset scan holds state per file until it ends (one scan over 20,000 per-trial files took 0.8 GB of the
    driver's memory per table, issue 13): compaction scans at most FILES_PER_SCAN files at once, and loses nothing."""
    import pyarrow.dataset as pads

    import study.compact as compact_mod

    store = fresh(written, tmp_path)  # 15 trials x 5 metrics parts + 15 records
    before = _sorted(load(store.root).drop(columns=["status"]))
    scans: list[int] = []
    real = pads.dataset

    def counted(source, *a, **k):
        if isinstance(source, list):
            scans.append(len(source))
        return real(source, *a, **k)

    monkeypatch.setattr(compact_mod, "FILES_PER_SCAN", 4)
    monkeypatch.setattr(compact_mod.pads, "dataset", counted)
    assert compact(store).trials == 15
    monkeypatch.setattr(compact_mod.pads, "dataset", real)
    assert scans and max(scans) <= 4 and sum(scans) >= 15 * 5 + 15  # every per-trial file read, 4 at most at once
    after = _sorted(load(store.root).drop(columns=["status"]))
    pd.testing.assert_frame_equal(before, after, check_categorical=False)
    assert len(Store(store.root).statuses()) == 15


def test_a_rerun_trial_after_compaction_replaces_its_compacted_copy(written, tmp_path):
    store = fresh(written, tmp_path)
    compact(store)
    failed = [t for t, s in store.statuses().items() if s == "failed"][0]
    rec = TrialRecorder(store, SPEC.study, "final", failed,
                        {"dataset": "a", "arch": "hps", "method": "uw", "seed": 1, "epochs": 1}, flush_every=0)
    rec.epoch(1, [{"split": "test", "task": "segmentation", "metric": "miou", "value": 0.5, "higher_is_better": True}],
              None, {})
    rec.finish("completed")
    assert store.statuses()[failed] == "completed"
    rows = load(store.root)
    assert len(rows[rows["trial_id"] == failed]) == 1  # the new copy only
    compact(store)
    rows = load(store.root)
    assert len(rows[rows["trial_id"] == failed]) == 1 and store.statuses()[failed] == "completed"


def test_a_manifest_naming_missing_files_is_an_error_naming_them(written, tmp_path):
    store = fresh(written, tmp_path)
    compact(store)
    manifest = json.loads((store.root / "compacted" / "manifest.json").read_text())
    gone = store.root / "compacted" / manifest["tables"]["metrics"][0]["file"]
    gone.unlink()
    with pytest.raises(AnalysisError, match=str(gone)):
        load(store.root)
    with pytest.raises(AnalysisError, match="names missing files"):
        store_selection(store.root)


def test_plain_summary_table_reads_compacted_trials(written, tmp_path):
    """The run summary's plain fallback table reads through the store's reader: the same numbers before and
    after compaction (it used to read metrics/*.parquet only, so a compacted store printed no results)."""
    from study.run_cli import plain_table

    store = fresh(written, tmp_path)
    before = plain_table(store.root, SPEC.study)
    m = metrics_frame(SPEC)
    last = m[(m["split"] == "test") & (m["epoch"] == SPEC.epochs) & (m["dataset"] == "b") & (m["method"] == "ew")
             & (m["metric"] == "miou")]["value"].mean()
    assert f"{last:.4f}" in before and "ew" in before
    compact(store)
    assert not list((store.root / "metrics").rglob("*.parquet"))  # every row now in compacted files
    assert plain_table(store.root, SPEC.study) == before


def test_litmus_compact_refuses_a_store_a_live_driver_holds(written, tmp_path, capsys):
    """`litmus compact` takes the driver's lock: while another process holds it, one error line (exit 2) naming
    the holder, and nothing of the store is touched; once the holder is gone, it compacts and releases."""
    from study.cli import main
    from study.lock import StoreLock

    store = fresh(written, tmp_path)
    files = sorted(p.relative_to(store.root) for p in store.root.rglob("*.parquet"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from study.lock import StoreLock; "
         "lock = StoreLock(sys.argv[1], print).acquire(); print('held', flush=True); time.sleep(600)", str(store.root)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["compact", str(store.root)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("litmus: error: ")
        assert f"PID {holder.pid}" in err and "in use by another `litmus run`" in err
        assert sorted(p.relative_to(store.root) for p in store.root.rglob("*.parquet")) == files
        assert not (store.root / "compacted").exists()
    finally:
        holder.kill()
        holder.wait()
    statuses = store.statuses()
    assert main(["compact", str(store.root)]) == 0
    assert f"{len(statuses)} finished trials compacted" in capsys.readouterr().out
    said: list[str] = []
    with StoreLock(store.root, said.append):  # compact took over the dead holder's lock and released it cleanly
        pass
    assert said == [] and store.statuses() == statuses
    with StoreLock(store.root, said.append, command="litmus compact"):  # and a driver is refused while it compacts
        with pytest.raises(LockError, match="in use by another `litmus compact`"):
            StoreLock(store.root, said.append).acquire()
