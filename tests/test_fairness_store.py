"""The store's contract (docs/store.md), as unit tests of the writer and checked through the readers:
a re-reported epoch replaces its rows, no metric row is ever duplicated, a crash in the middle of a
write leaves the previous file intact, and a reader polling while the driver writes never sees a
partial file."""

from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

import analysis
from study.records import group, trial_record
from study.store import Store

CONFIG = {"dataset": "multi_digits", "arch": "hps", "method": "ew", "seed": 0}


def _epoch(epoch: int, value: float) -> list[dict]:
    return [{"split": s, "epoch": epoch, "task": t, "metric": m, "value": value + i,
             "higher_is_better": m != "loss"}
            for i, (s, t, m) in enumerate((s, t, m) for s in ("train", "val", "test") for t in ("left", "right")
                                          for m in ("loss", "accuracy"))]


ROWS_PER_EPOCH = 12


def _grp(tid: str = "t0") -> dict:
    return group("s", "final", tid, CONFIG)


def _loaded(root) -> list[tuple]:
    df = analysis.load(root)
    return sorted(zip(df["trial_id"].astype(str), df["split"].astype(str), df["epoch"], df["task"].astype(str),
                      df["metric"].astype(str), df["value"]))


def test_a_re_reported_epoch_replaces_its_rows(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 10.0))
    store.write_metrics(_grp(), _epoch(1, 10.0) + _epoch(2, 20.0))
    # the trial restarted from epoch 1 (a retry): epoch 1 reported again with other values, then epoch 2
    store.write_metrics(_grp(), _epoch(1, 30.0))
    store.write_metrics(_grp(), _epoch(1, 30.0) + _epoch(2, 40.0))
    got = store.trial_metrics("t0")
    assert len(got) == 2 * ROWS_PER_EPOCH
    values = {(r["epoch"], r["split"], r["task"], r["metric"]): r["value"] for r in got}
    assert len(values) == len(got)
    want = {(r["epoch"], r["split"], r["task"], r["metric"]): r["value"] for r in _epoch(1, 30.0) + _epoch(2, 40.0)}
    assert values == want
    loaded = {r[1:5]: r[5] for r in _loaded(store.root)}  # the analysis reads the same values (losses aside)
    assert len(loaded) == len(_loaded(store.root))
    assert loaded == {(s, e, t, m): v for (e, s, t, m), v in want.items() if m != "loss"}


def test_duplicate_keys_in_one_write_keep_the_last_value(tmp_path) -> None:
    store = Store(tmp_path / "s")
    n = store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0) + _epoch(1, 5.0))
    assert n == 2 * ROWS_PER_EPOCH
    got = store.trial_metrics("t0")
    assert len(got) == 2 * ROWS_PER_EPOCH
    assert sorted(r["value"] for r in got if r["epoch"] == 1) == sorted(r["value"] for r in _epoch(1, 5.0))
    df = analysis.load(store.root)
    assert not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()


def test_a_trial_record_is_replaced_not_duplicated(tmp_path) -> None:
    store = Store(tmp_path / "s")
    store.write_trial(trial_record(_grp(), CONFIG, "running", epochs=1, started_at="a"))
    store.write_trial(trial_record(_grp(), CONFIG, "completed", epochs=2, started_at="a"))
    assert [(t["trial_id"], t["status"], t["epochs"]) for t in store.trials()] == [("t0", "completed", 2)]
    trials = analysis.load_trials(store.root)
    assert list(trials["status"].astype(str)) == ["completed"]
    with pytest.raises(ValueError, match="(?i)status"):
        store.write_trial(trial_record(_grp(), CONFIG, "done", epochs=2, started_at="a"))
    assert store.statuses() == {"t0": "completed"}


def test_a_crash_in_the_middle_of_a_write_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0))
    store.write_trial(trial_record(_grp(), CONFIG, "running", epochs=1, started_at="a"))
    before_rows, before_trials = _loaded(store.root), store.trials()
    real = pq.write_table
    calls = []

    def crash_half_way(table, where, *args, **kwargs):
        """Write half of the file's bytes where asked, then die (disk full, process killed)."""
        calls.append(str(where))
        real(table, str(where) + ".whole", *args, **kwargs)
        data = open(str(where) + ".whole", "rb").read()
        with open(where, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", crash_half_way)
    with pytest.raises(OSError):
        store.write_metrics(_grp(), _epoch(1, 1.0) + _epoch(2, 2.0))
    with pytest.raises(OSError):
        store.write_trial(trial_record(_grp(), CONFIG, "completed", epochs=2, started_at="a"))
    monkeypatch.setattr(pq, "write_table", real)
    assert len(calls) == 2, "the store no longer writes through pyarrow.parquet.write_table: update this test"
    for p in calls:
        (tmp_path / p).with_name(p.rsplit("/", 1)[-1] + ".whole").unlink()
    assert _loaded(store.root) == before_rows
    assert store.trial_metrics("t0") and len(store.trial_metrics("t0")) == ROWS_PER_EPOCH
    assert store.trials() == before_trials
    # nothing half-written is left where a reader looks
    left = [p.name for p in store.root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert sorted(left) == ["000001.parquet", "t0.parquet"]  # metrics/t0/ (epoch 1's part), trials/


def test_a_reader_never_sees_a_partial_file(tmp_path) -> None:
    """The driver rewrites a trial's file every epoch while a poller (``litmus status``, a report) reads."""
    store = Store(tmp_path / "s")
    store.write_metrics(_grp(), _epoch(1, 1.0))
    store.write_trial(trial_record(_grp(), CONFIG, "running", epochs=1, started_at="a"))
    stop = threading.Event()
    errors: list[str] = []
    reads = [0]

    def check(epochs: list[int], n_rows: int, per_epoch: int) -> None:
        if n_rows % per_epoch or epochs != list(range(1, len(epochs) + 1)):
            errors.append(f"inconsistent: {n_rows} rows, epochs {epochs}")

    def poll() -> None:
        # the readers a poller uses: the store's (litmus status, a resuming driver) and the analysis's
        poller = Store(store.root, create=False)
        while not stop.is_set():
            try:
                rows = poller.trial_metrics("t0")
                check(sorted({r["epoch"] for r in rows}), len(rows), ROWS_PER_EPOCH)
                (rec,) = poller.trials()
                assert rec["status"] == "running" and rec["epochs"] >= 1
                if reads[0] % 5 == 0:
                    df = analysis.load(store.root)
                    check(sorted(set(df["epoch"])), len(df), ROWS_PER_EPOCH // 2)
                reads[0] += 1
            except Exception as err:  # noqa: BLE001 - any failed read is the finding
                errors.append(repr(err))

    reader = threading.Thread(target=poll)
    reader.start()
    rows: list[dict] = []
    try:
        for e in range(1, 101):
            rows += _epoch(e, float(e))
            store.write_metrics(_grp(), rows)
    finally:
        stop.set()
        reader.join()
    assert reads[0] > 10, "the reader did not overlap the writes"
    assert errors == []
    assert len(store.trial_metrics("t0")) == 100 * ROWS_PER_EPOCH


def test_a_foreign_file_in_the_store_is_named_in_a_warning_and_left_out(tmp_path):
    import warnings as _w

    import pandas as pd

    from analysis.store import load_trials, sources
    from analysis.synthetic import SyntheticStudy, make_store
    from litmus.errors import StoreWarning

    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0.0, "uw": 1.0}}, seeds=[0, 1], epochs=2))
    foreign = store / "metrics" / "exported_by_hand.parquet"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(foreign)
    n_files = len([f for f in (store / "metrics").rglob("*.parquet")])
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        src = sources(store, "metrics")
    assert foreign not in src.per_trial and len(src.per_trial) == n_files - 1
    named = [w for w in caught if issubclass(w.category, StoreWarning)]
    assert len(named) == 1 and str(foreign) in str(named[0].message)
    assert len(load_trials(store)) == 4  # the trials table is untouched
