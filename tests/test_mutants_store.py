"""The store writer's parts bookkeeping (study/store.py) read back file by file (mutation testing,
docs/testing.md): which parts exist with which epochs, a restart inside a part or across parts, a legacy
whole-trial file, footers without statistics, what a trial record holds, and bad ids and roots."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.schema import METRICS_SCHEMA
from litmus.errors import StoreError
from study.records import group, trial_record
from study.store import Store, _max_epoch

CONFIG = {"dataset": "d", "arch": "hps", "method": "ew", "seed": 4}


def _grp(tid: str = "t0", study: str = "s") -> dict:
    return group(study, "final", tid, CONFIG)


def _epoch(e: int, v: float) -> list[dict]:
    return [{"split": "val", "epoch": e, "task": "a", "metric": "acc", "value": v, "higher_is_better": True},
            {"split": "test", "epoch": e, "task": "a", "metric": "acc", "value": v + 0.5, "higher_is_better": True}]


def _epochs(store: Store, tid: str = "t0") -> list[tuple[int, float]]:
    return sorted((r["epoch"], r["value"]) for r in store.trial_metrics(tid) if r["split"] == "val")


def _parts(store: Store, tid: str = "t0") -> list[tuple[int, int, str]]:
    return [(a, b, p.name) for a, b, p in store.parts("metrics", tid)]


def test_parts_are_named_by_their_first_epoch_and_end_before_the_next(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0))
    store.write_metrics(_grp(), _epoch(3, 3.0))
    store.write_metrics(_grp(), _epoch(4, 4.0) + _epoch(5, 5.0) + _epoch(6, 6.0))
    assert _parts(store) == [(1, 2, "000001.parquet"), (3, 3, "000003.parquet"), (4, 6, "000004.parquet")]
    assert store.stored_epochs("t0") == 6
    # files the store does not own are ignored: hidden temporaries, other names
    d = store.root / "metrics" / "t0"
    (d / ".000007.parquet.x.tmp").write_bytes(b"partial")
    (d / "notes.parquet").write_bytes(b"x")
    (d / "000009.txt").write_bytes(b"x")
    assert len(_parts(store)) == 3
    assert _parts(store, "other") == [] and store.stored_epochs("other") == 0


def test_a_restart_inside_a_part_keeps_its_earlier_epochs(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0) + _epoch(3, 3.0))
    store.write_metrics(_grp(), _epoch(4, 4.0))
    store.write_metrics(_grp(), _epoch(5, 5.0))
    store.write_metrics(_grp(), _epoch(2, 20.0))  # restart at 2: epochs 2.. replaced, 1 kept
    assert _epochs(store) == [(1, 1.0), (2, 20.0)]
    assert _parts(store) == [(1, 2, "000001.parquet")]
    store.write_metrics(_grp(), _epoch(3, 30.0))
    store.write_metrics(_grp(), _epoch(3, 31.0) + _epoch(4, 41.0))  # restart exactly at a part's first epoch
    assert _epochs(store) == [(1, 1.0), (2, 20.0), (3, 31.0), (4, 41.0)]
    assert _parts(store) == [(1, 2, "000001.parquet"), (3, 4, "000003.parquet")]
    store.write_metrics(_grp(), _epoch(1, 100.0))  # back to the start
    assert _epochs(store) == [(1, 100.0)] and _parts(store) == [(1, 1, "000001.parquet")]


def test_rows_are_written_sorted_with_their_group_columns(tmp_path) -> None:
    store = Store(tmp_path / "s")
    rows = [dict(r, task=t) for t in ("b", "a") for r in _epoch(2, 2.0) + _epoch(1, 1.0)]
    assert store.write_metrics(_grp(), rows) == 8
    t = pq.read_table(store.root / "metrics" / "t0" / "000001.parquet")
    assert t.schema == METRICS_SCHEMA
    keys = list(zip(t.column("epoch").to_pylist(), t.column("split").to_pylist(), t.column("task").to_pylist()))
    assert keys == sorted(keys)
    for col, want in (("study", "s"), ("stage", "final"), ("trial_id", "t0"), ("dataset", "d"), ("arch", "hps"),
                      ("method", "ew"), ("distribution", None), ("seed", 4)):
        assert set(t.column(col).to_pylist()) == {want}, col
    assert store.write_metrics(_grp(), []) == 0 and len(_parts(store)) == 1


def test_a_legacy_whole_trial_file_is_read_and_then_moved_into_parts(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0) + _epoch(3, 3.0))
    part = store.root / "metrics" / "t0" / "000001.parquet"
    legacy = store.root / "metrics" / "t0.parquet"
    os.replace(part, legacy)
    (store.root / "metrics" / "t0").rmdir()
    assert _parts(store) == [(1, 3, "t0.parquet")] and _epochs(store) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    store.write_metrics(_grp(), _epoch(3, 30.0))  # a restart at 3: epochs 1-2 move into a part, the file goes
    assert not legacy.exists()
    assert _parts(store) == [(1, 3, "000001.parquet")]
    assert _epochs(store) == [(1, 1.0), (2, 2.0), (3, 30.0)]
    # a legacy file and a later part: the legacy file ends before the part
    store2 = Store(tmp_path / "s2")
    store2.write_metrics(_grp(), _epoch(1, 1.0))
    os.replace(store2.root / "metrics" / "t0" / "000001.parquet", store2.root / "metrics" / "t0.parquet")
    store2.write_metrics(_grp(), _epoch(2, 2.0))
    assert _parts(store2) == [(1, 1, "t0.parquet"), (2, 2, "000002.parquet")]


def test_max_epoch_from_statistics_or_the_column(tmp_path) -> None:
    t = pa.table({"epoch": pa.array([3, 9, 4], pa.int64()), "v": [1.0, 2.0, 3.0]})
    with_stats = tmp_path / "a.parquet"
    pq.write_table(t, with_stats, row_group_size=1)
    assert _max_epoch(with_stats) == 9
    no_stats = tmp_path / "b.parquet"
    pq.write_table(t, no_stats, write_statistics=False, row_group_size=2)
    assert _max_epoch(no_stats) == 9
    empty = tmp_path / "e.parquet"
    pq.write_table(t.slice(0, 0), empty, write_statistics=False)
    assert _max_epoch(empty) == 0
    record = tmp_path / "r.parquet"
    pq.write_table(pa.table({"trial_id": ["x"]}), record)
    assert _max_epoch(record) == 1 << 62


def test_weights_are_appended_and_replaced_like_metrics(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_weights("s", "t0", {1: {"a": 1.0, "b": 2.0}, 2: {"a": 3.0, "b": 4.0}})
    store.write_weights("s", "t0", {})
    store.write_weights("s", "t0", {3: {"a": 5.0}})
    assert store.trial_weights("t0") == {1: {"a": 1.0, "b": 2.0}, 2: {"a": 3.0, "b": 4.0}, 3: {"a": 5.0}}
    store.write_weights("s", "t0", {2: {"a": 9.0}})
    assert store.trial_weights("t0") == {1: {"a": 1.0, "b": 2.0}, 2: {"a": 9.0}}
    t = pq.read_table(store.root / "weights" / "t0" / "000001.parquet")
    assert set(t.column("study").to_pylist()) == {"s"} and set(t.column("trial_id").to_pylist()) == {"t0"}
    assert store.trial_weights("none") == {}


def test_a_trial_record_holds_json_config_and_versions(tmp_path) -> None:
    store = Store(tmp_path / "s")
    rec = trial_record(_grp(), dict(CONFIG, lr=0.1), "completed", epochs=3, started_at="t",
                       summary={"versions": {"torch": "2", "litmus": "0.1"}})
    store.write_trial(rec)
    got = store.trials()[0]
    assert json.loads(got["config"]) == dict(CONFIG, lr=0.1)
    assert got["config"] == json.dumps(dict(CONFIG, lr=0.1), sort_keys=True)
    assert json.loads(got["versions"]) == {"torch": "2", "litmus": "0.1"}
    assert (got["status"], got["stage"], got["epochs"], got["seed"]) == ("completed", "final", 3, 4)
    store.write_trial(dict(rec, config='{"as": "text"}', versions=None, trial_id="t1"))
    t1 = [r for r in store.trials() if r["trial_id"] == "t1"][0]
    assert t1["config"] == '{"as": "text"}' and t1["versions"] is None
    with pytest.raises(StoreError, match=r"trial status must be one of \['running', 'completed', 'failed', "
                                         r"'diverged'\], got 'done'"):
        store.write_trial(dict(rec, status="done"))
    with pytest.raises(StoreError, match="got None"):
        store.write_trial({k: v for k, v in rec.items() if k != "status"})


def test_trials_of_one_study_and_some_columns(tmp_path) -> None:
    store = Store(tmp_path / "s")
    for tid, study, status in (("a", "s", "completed"), ("b", "s", "failed"), ("c", "other", "running")):
        store.write_trial(trial_record(_grp(tid, study), CONFIG, status, epochs=1, started_at="t"))
    assert sorted(r["trial_id"] for r in store.trials()) == ["a", "b", "c"]
    assert sorted(r["trial_id"] for r in store.trials("s")) == ["a", "b"]
    assert store.trials("none") == []
    cols = store.trials("other", columns=["trial_id", "status"])
    assert cols == [{"trial_id": "c", "status": "running"}]
    assert store.statuses() == {"a": "completed", "b": "failed", "c": "running"}
    assert store.statuses("s") == {"a": "completed", "b": "failed"}
    assert Store(tmp_path / "empty").trials() == []


def test_bad_ids_and_roots(tmp_path) -> None:
    store = Store(tmp_path / "s")
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(StoreError, match="bad trial id"):
            store.write_metrics(_grp(bad), _epoch(1, 1.0))
        with pytest.raises(StoreError, match="bad trial id"):
            store.parts("metrics", bad)
    with pytest.raises(StoreError, match="bad trial id"):
        store.write_trial(trial_record(_grp("a/b"), CONFIG, "running", epochs=0, started_at="t"))
    with pytest.raises(StoreError, match="is not a litmus store"):
        Store(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()
    assert Store(tmp_path / "s", create=False).root == store.root
    for sub in ("metrics", "trials", "weights"):
        assert (store.root / sub).is_dir()
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []  # the probe is removed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="is not writable"):
        Store(blocker / "s")


def test_a_compacted_trial_resumed_at_a_later_epoch_keeps_its_earlier_rows(tmp_path) -> None:
    from study.compact import compact

    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0) + _epoch(3, 3.0))
    store.write_weights("s", "t0", {1: {"a": 1.0}, 2: {"a": 2.0}, 3: {"a": 3.0}})
    store.write_trial(trial_record(_grp(), CONFIG, "completed", epochs=3, started_at="t"))
    compact(store)  # finished trials only
    assert _parts(store) == [] and "t0" in store.compacted_ids()
    assert _epochs(store) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    store.write_metrics(_grp(), _epoch(3, 30.0) + _epoch(4, 40.0))  # rerun, resumed from a checkpoint at epoch 2
    assert _parts(store) == [(1, 4, "000001.parquet")]  # the per-trial copy now holds every epoch
    assert _epochs(store) == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    t = pq.read_table(store.root / "metrics" / "t0" / "000001.parquet")
    assert t.schema == METRICS_SCHEMA and t.num_rows == 8
    store.write_weights("s", "t0", {3: {"a": 9.0}})
    assert store.trial_weights("t0") == {1: {"a": 1.0}, 2: {"a": 2.0}, 3: {"a": 9.0}}
