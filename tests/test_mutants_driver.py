"""The driver's deciding functions without a Ray cluster (mutation testing, docs/testing.md): how many trials
run at once, how a Tune result becomes an outcome, which checkpoint a resumed trial starts from, which jobs a
resumed stage skips, and what the store writer (Ray's callback) writes for each way a trial ends. Ray's
``Callback`` / ``Searcher`` classes are driven with plain stand-ins for Tune's trial objects; the store is
real Parquet, read back through the analysis's reader."""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import analysis
from analysis.schema import Status
from litmus.errors import NoSpaceError
from study.driver import (NO_MORE_JOBS, Outcome, _searcher, _store_writer, concurrency, latest_checkpoint, no_space,
                          outcome_of)
from study.final import ListSource, pending
from study.plan import Job
from study.progress import Progress
from study.recorder import TrialRecorder
from study.spec import parse
from study.store import Store

CONFIG = {"dataset": "multi_digits", "arch": "hps", "method": "uw", "distribution": None, "seed": 3, "epochs": 2}


def _spec(tmp_path: Path, epochs: int = 2, **extra: Any):
    return parse({"name": "drv", "store": str(tmp_path / "store"),
                  "datasets": [{"name": "multi_digits", "options": {"n_train": 64, "n_val": 32, "n_test": 32},
                                "epochs": epochs}],
                  "methods": ["ew"], **extra})


# --- concurrency --------------------------------------------------------------------------------------------
def test_concurrency_from_cpus_gpus_and_the_spec(tmp_path) -> None:
    cpu2 = _spec(tmp_path, resources={"cpu": 2})
    assert concurrency(cpu2, {"CPU": 7.0}) == 3  # floor(7 / 2)
    assert concurrency(cpu2, {"CPU": 1.0}) == 1  # never below one
    assert concurrency(cpu2, {}) == 1
    half_gpu = _spec(tmp_path, resources={"cpu": 1, "gpu": 0.5})
    assert concurrency(half_gpu, {"CPU": 8.0, "GPU": 1.0}) == 2  # the GPU bounds: 1 / 0.5
    assert concurrency(half_gpu, {"CPU": 3.0, "GPU": 4.0}) == 3  # the CPUs bound
    assert concurrency(half_gpu, {"CPU": 8.0, "GPU": 0.4}) == 1  # no whole share: still one
    assert concurrency(_spec(tmp_path, resources={"cpu": 1, "gpu": 0.5}, concurrency=5), {"CPU": 1.0}) == 5


# --- outcome_of ---------------------------------------------------------------------------------------------
def _job(tid: str = "t1", stage: str = "final", **kw: Any) -> Job:
    return Job(stage, tid, dict(CONFIG), **kw)


def test_outcome_of_each_way_a_trial_ends() -> None:
    job = _job()
    failed = outcome_of(job, {"epoch": 2, "status": "running"}, True)
    assert (failed.status, failed.epochs, failed.pruned) == (Status.FAILED, 2, False)
    assert "error column" in failed.error
    assert outcome_of(job, None, True).epochs == 0
    div = outcome_of(job, {"epoch": 1, "status": "diverged", "error": "loss is nan"}, False)
    assert (div.status, div.epochs, div.error) == (Status.DIVERGED, 1, "loss is nan")
    done = outcome_of(job, {"epoch": 2, "done_epochs": True}, False)
    assert (done.status, done.epochs, done.pruned, done.error) == (Status.COMPLETED, 2, False, None)
    cut = outcome_of(job, {"epoch": 1, "done_epochs": False}, False)
    assert (cut.status, cut.epochs, cut.pruned) == (Status.COMPLETED, 1, True)
    assert outcome_of(job, {"epoch": 2}, False).pruned is False  # no flag: ran to its end
    assert outcome_of(job, {"epoch": None}, False).epochs == 0


# --- no_space -----------------------------------------------------------------------------------------------
def test_no_space_is_found_anywhere_in_the_chain_of_causes() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/store/x.parquet")
    try:
        try:
            raise full
        except OSError as e:
            raise RuntimeError("tune stopped") from e
    except RuntimeError as outer:
        err = no_space(outer)
    assert isinstance(err, NoSpaceError) and str(err) == "no space left on /data/store/x.parquet"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise ValueError("while handling")  # implicit context, not an explicit cause
    except ValueError as outer:
        assert str(no_space(outer)) == "no space left on the device"
    assert no_space(OSError(errno.EACCES, "denied", "/x")) is None
    assert no_space(RuntimeError("other")) is None
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a  # a cycle ends the walk
    assert no_space(a) is None


# --- latest_checkpoint ----------------------------------------------------------------------------------------
def _ckpt(root: Path, folder: str, tid: str, n: int, epoch: int | None, mtime: float | None = None) -> Path:
    d = root / folder / tid / f"checkpoint_{n:06d}"
    d.mkdir(parents=True)
    (d / "trainer.pt").write_bytes(b"x")
    if epoch is not None:
        (d / "epoch.json").write_text(json.dumps({"epoch": epoch}))
    if mtime is not None:
        os.utime(d / "trainer.pt", (mtime, mtime))
    return d / "trainer.pt"


def test_latest_checkpoint_is_the_newest_at_an_epoch_the_store_holds(tmp_path) -> None:
    root = tmp_path / "ray"
    run1, run2 = "drv-20260101-120000-11", "drv-20260102-120000-12"
    e1 = _ckpt(root, run1, "t1", 0, 1, mtime=1000)
    e2 = _ckpt(root, run1, "t1", 1, 2, mtime=1001)
    e2_later = _ckpt(root, run2, "t1", 0, 2, mtime=2000)  # the same epoch, written later: preferred
    _ckpt(root, run2, "t1", 1, 3, mtime=3000)  # beyond the store: never
    _ckpt(root, run2, "t2", 0, 2, mtime=4000)  # another trial
    _ckpt(root, "other-20260101-120000-1", "t1", 0, 2, mtime=5000)  # another study's folder
    _ckpt(root, run2, "t1", 2, None, mtime=6000)  # incomplete (no epoch.json)
    bad = _ckpt(root, run2, "t1", 3, 2, mtime=7000)
    (bad.parent / "epoch.json").write_text("{not json")
    assert latest_checkpoint(root, "t1", 2, "drv") == e2_later
    assert latest_checkpoint(root, "t1", 3, "drv").parent.name == "checkpoint_000001"
    assert latest_checkpoint(root, "t1", 1, "drv") == e1
    assert latest_checkpoint(root, "t1", 0, "drv") is None
    assert latest_checkpoint(None, "t1", 2, "drv") is None
    assert latest_checkpoint(tmp_path / "absent", "t1", 2, "drv") is None
    assert e2.exists()


def test_latest_checkpoint_never_follows_a_symlink_out_of_the_storage(tmp_path) -> None:
    root, outside = tmp_path / "ray", tmp_path / "elsewhere"
    ok = _ckpt(root, "drv-20260101-120000-11", "t1", 0, 1, mtime=1000)
    _ckpt(outside, "drv-20260101-120000-12", "t1", 0, 2, mtime=2000)
    (root / "drv-20260101-120000-12").symlink_to(outside / "drv-20260101-120000-12")
    assert latest_checkpoint(root, "t1", 2, "drv") == ok
    linked = root / "drv-20260101-120000-13" / "t1" / "checkpoint_000000"
    linked.mkdir(parents=True)
    (linked / "epoch.json").write_text(json.dumps({"epoch": 2}))
    (linked / "trainer.pt").symlink_to(ok)  # the file itself a link
    assert latest_checkpoint(root, "t1", 2, "drv") == ok


# --- pending / ListSource ---------------------------------------------------------------------------------------
def test_pending_skips_finished_trials_and_duplicates() -> None:
    jobs = [_job(t) for t in ("a", "b", "c", "d", "e", "a", "f")]
    statuses = {"a": "running", "b": "completed", "c": "failed", "d": "diverged"}
    assert [j.trial_id for j in pending(jobs, statuses)] == ["a", "e", "f"]
    assert [j.trial_id for j in pending(jobs, statuses, retry_failed=True)] == ["a", "c", "d", "e", "f"]
    assert pending(jobs, {t: "completed" for t in "abcdef"}, retry_failed=True) == []


def test_list_source_yields_its_jobs_then_no_more() -> None:
    jobs = [_job("a"), _job("b")]
    src = ListSource(jobs)
    assert src.next() is jobs[0]
    src.done(jobs[0], Outcome(Status.COMPLETED, 2))
    assert src.next() is jobs[1]
    assert src.next() == NO_MORE_JOBS and src.next() == NO_MORE_JOBS
    assert not hasattr(src, "outcomes")  # outcomes are in the store: nothing kept per trial


# --- the searcher -----------------------------------------------------------------------------------------------
class _Source:
    def __init__(self, items: list) -> None:
        self.items, self.done_calls = list(items), []

    def next(self):
        return self.items.pop(0)

    def done(self, job: Job, outcome: Outcome) -> None:
        self.done_calls.append((job.trial_id, outcome))


def test_searcher_hands_tune_each_job_and_tells_the_source_how_it_ended(tmp_path) -> None:
    from ray.tune.search import Searcher

    store = Store(tmp_path / "store")
    job = _job("t1", stage="tune", label="cand", replicate=1, patience=3, reference={"left/accuracy": 0.5})
    root = tmp_path / "ray"
    ck = _ckpt(root, "drv-20260101-120000-1", "t1", 0, 1)
    rec = TrialRecorder(store, "drv", "tune", "t1", dict(CONFIG), flush_every=1e9)
    rec.epoch(1, [{"split": "val", "task": "left", "metric": "accuracy", "value": 0.7, "higher_is_better": True}],
              None, None)
    assert store.stored_epochs("t1") == 0  # buffered
    src = _Source([None, job, NO_MORE_JOBS])
    s = _searcher(src, 3, root, store, "drv", ["plug.mod"], {"t1": rec})
    assert s.suggest("ray-0") is None  # nothing yet
    cfg = s.suggest("ray-1")
    assert cfg["train"] == job.config
    assert cfg["litmus"] == {"trial_id": "t1", "stage": "tune", "label": "cand", "replicate": 1,
                             "reference": {"left/accuracy": 0.5}, "checkpoint_every": 3,
                             "resume_from": None, "plugins": ["plug.mod"], "patience": 3}
    assert s.suggest("ray-2") == Searcher.FINISHED
    s.on_trial_complete("ray-1", {"epoch": 1, "done_epochs": False})
    assert store.stored_epochs("t1") == 1  # flushed before the source reads the store
    assert src.done_calls == [("t1", Outcome(Status.COMPLETED, 1, pruned=True))]
    assert [r["status"] for r in store.trials()] == []  # the flush wrote no record
    s.on_trial_complete("ray-1", None, True)  # already told: ignored
    assert len(src.done_calls) == 1
    # a job whose epochs the store holds resumes from the checkpoint of that epoch
    s2 = _searcher(_Source([job]), 0, root, store, "drv", None, None)
    assert s2.suggest("ray-3")["litmus"]["resume_from"] == str(ck)
    s2.on_trial_complete("ray-3", {"epoch": 2}, True)
    # without a store nothing is known to be stored: no checkpoint to resume from
    s3 = _searcher(_Source([job]), 0, root, None, "drv", None, None)
    assert s3.suggest("ray-4")["litmus"]["resume_from"] is None


# --- the store writer -------------------------------------------------------------------------------------------
@dataclass
class _Trial:
    tid: str
    stage: str = "final"
    replicate: int | None = None
    last_result: dict | None = None
    error_file: str | None = None
    num_failures: int = 0
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = {"litmus": {"trial_id": self.tid, "stage": self.stage, "replicate": self.replicate},
                       "train": dict(CONFIG)}


def _rows(epoch: int, value: float) -> list[dict]:
    return [{"split": s, "task": t, "metric": "accuracy", "value": value + i, "higher_is_better": True}
            for i, (s, t) in enumerate((s, t) for s in ("val", "test") for t in ("left", "right"))]


class _Stopper:
    """The early stopper's side the store writer uses: which trials it stopped; forget a finished one."""

    def __init__(self, stopped: dict) -> None:
        self.stopped, self.forgotten = dict(stopped), []

    def forget(self, tid: str) -> None:
        self.forgotten.append(tid)
        self.stopped.pop(tid, None)


def _writer(tmp_path, stopped: dict | None = None):
    spec = _spec(tmp_path, retries=4)
    store = Store(spec.store)
    lines: list[str] = []
    progress = Progress("final", 5, 1, lines.append)
    w = _store_writer(spec, store, progress, _Stopper(stopped or {}), {})
    return spec, store, progress, lines, w


def _result(trial: _Trial, epoch: int, value: float, **kw: Any) -> dict:
    r = {"litmus_id": trial.tid, "epoch": epoch, "rows": _rows(epoch, value), "weights": {"left": 1.0, "right": 1.0},
         "summary": {"wall_time_s": 1.5 * epoch}, "status": "running", "done_epochs": epoch >= 2, **kw}
    trial.last_result = r
    return r


def _records(store: Store) -> dict[str, dict]:
    return {r["trial_id"]: r for r in store.trials()}


def test_store_writer_writes_each_epoch_and_a_completed_record(tmp_path) -> None:
    spec, store, progress, lines, w = _writer(tmp_path)
    t = _Trial("t1", replicate=2)
    w.on_trial_start(0, [], t)
    assert progress.running == {"t1"}
    w.on_trial_result(0, [], t, _result(t, 1, 0.1))
    w.on_trial_result(0, [], t, _result(t, 2, 0.5))
    w.on_trial_complete(0, [], t)
    assert progress.running == set() and w.recorders == {}
    rec = _records(store)["t1"]
    assert (rec["status"], rec["error"], rec["epochs"], rec["replicate"], rec["stage"]) == ("completed", None, 2, 2,
                                                                                              "final")
    assert json.loads(rec["config"])["replicate"] == 2 and rec["wall_time_s"] == 3.0
    df = analysis.load(store.root)
    assert sorted(zip(df["epoch"], df["split"].astype(str), df["task"].astype(str), df["value"])) == sorted(
        (e, s, t_, v + i) for e, v in ((1, 0.1), (2, 0.5))
        for i, (s, t_) in enumerate((s, t_) for s in ("val", "test") for t_ in ("left", "right")))
    assert store.trial_weights("t1") == {1: {"left": 1.0, "right": 1.0}, 2: {"left": 1.0, "right": 1.0}}
    assert progress.done == 1 and lines[-1].endswith("uw on multi_digits seed 3: completed")


def test_store_writer_gives_the_freed_heap_back_every_n_finished_trials(tmp_path, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("study.driver.RELEASE_HEAP_EVERY", 3)
    monkeypatch.setattr("study.driver.heap.release_freed_heap", lambda: calls.append(len(_records(store))) or True)
    spec, store, progress, lines, w = _writer(tmp_path)
    for i in range(7):
        t = _Trial(f"t{i}")
        w.on_trial_result(0, [], t, _result(t, 2, 0.5))
        if i == 4:  # a failed trial is a finished one too
            w.on_trial_error(0, [], t)
        else:
            w.on_trial_complete(0, [], t)
    assert calls == [3, 6]  # after the 3rd and the 6th finished trial's record


def test_store_writer_a_restarted_trial_replaces_its_epochs(tmp_path) -> None:
    spec, store, progress, lines, w = _writer(tmp_path)
    t = _Trial("t1")
    for e, v in ((1, 0.1), (2, 0.2), (1, 0.7), (2, 0.9)):  # a retry re-reports epochs 1 and 2
        w.on_trial_result(0, [], t, _result(t, e, v))
    w.on_trial_complete(0, [], t)
    df = analysis.load(store.root)
    assert len(df) == 8  # 2 epochs x 4 rows, never twice
    assert sorted(df.loc[df["epoch"] == 1, "value"]) == pytest.approx([0.7, 1.7, 2.7, 3.7])


def test_store_writer_pruned_stopped_diverged_and_failed_trials(tmp_path) -> None:
    spec, store, progress, lines, w = _writer(tmp_path, stopped={"stopped": 1})
    pruned, stopped, div, failed = _Trial("pruned"), _Trial("stopped"), _Trial("div"), _Trial("failed")
    for t in (pruned, stopped):
        w.on_trial_result(0, [], t, _result(t, 1, 0.3))
        w.on_trial_complete(0, [], t)
    w.on_trial_result(0, [], div, _result(div, 1, 0.3))
    # it diverged during epoch 2 (the trainable reports the epoch it was in)
    w.on_trial_result(0, [], div, {"litmus_id": "div", "epoch": 2, "rows": [], "status": "diverged",
                                   "error": "loss is nan at step 4", "done_epochs": True})
    div.last_result = {"litmus_id": "div", "epoch": 2, "status": "diverged", "error": "loss is nan at step 4",
                       "done_epochs": True}
    w.on_trial_complete(0, [], div)
    (tmp_path / "error.txt").write_text("Traceback ...\nValueError: boom\n")
    failed.error_file = str(tmp_path / "error.txt")
    w.on_trial_result(0, [], failed, _result(failed, 1, 0.3))
    w.on_trial_error(0, [], failed)
    nofile = _Trial("nofile", error_file=str(tmp_path / "absent.txt"))
    w.on_trial_error(0, [], nofile)
    recs = _records(store)
    assert (recs["pruned"]["status"], recs["pruned"]["epochs"]) == ("completed", 1)
    assert recs["pruned"]["error"] == "pruned: stopped early by the scheduler after epoch 1"
    assert (recs["stopped"]["status"], recs["stopped"]["error"]) == ("completed", None)  # early stopping: not pruned
    assert (recs["div"]["status"], recs["div"]["error"], recs["div"]["epochs"]) == ("diverged", "loss is nan at step 4", 2)
    assert store.stored_epochs("div") == 1
    assert (recs["failed"]["status"], recs["failed"]["error"]) == ("failed", "Traceback ...\nValueError: boom")
    assert recs["nofile"]["error"] == "trial failed (Ray gave no error text)" and recs["nofile"]["epochs"] == 0
    assert (progress.done, progress.failed, progress.diverged) == (2, 2, 1)
    df = analysis.load(store.root)
    assert set(df["trial_id"].astype(str)) == {"pruned", "stopped", "div", "failed"}  # rows before the end kept
    assert w.recorders == {}


def test_store_writer_epochs_come_from_this_trials_last_result(tmp_path) -> None:
    spec, store, progress, lines, w = _writer(tmp_path)
    t = _Trial("t1")
    w.on_trial_result(0, [], t, _result(t, 1, 0.1))
    w.on_trial_result(0, [], t, _result(t, 2, 0.1))
    t.last_result = {"litmus_id": "another", "epoch": 9, "done_epochs": True}  # a reused actor's stale result
    w.on_trial_complete(0, [], t)
    assert _records(store)["t1"]["epochs"] == 2


def test_store_writer_says_when_a_trial_resumes_or_is_retried(tmp_path) -> None:
    spec, store, progress, lines, w = _writer(tmp_path)
    t = _Trial("t1", num_failures=1)
    w.on_trial_result(0, [], t, _result(t, 2, 0.1, resumed_from=1))
    assert lines == ["[final] uw on multi_digits seed 3: resumed from its checkpoint at epoch 1"]
    w.on_trial_result(0, [], t, _result(t, 3, 0.1, resumed_from=1))  # said once
    w.on_trial_recover(0, [], t)
    assert lines[1:] == ["[final] trial t1 failed, retrying (1/4)"]
    fresh = _Trial("t2")
    w.on_trial_result(0, [], fresh, _result(fresh, 1, 0.1, resumed_from=0))
    assert len(lines) == 2


# --- the recorder --------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_recorder_flushes_by_time_at_the_last_epoch_and_at_the_end(tmp_path) -> None:
    store = Store(tmp_path / "store")
    clock = _Clock()
    rec = TrialRecorder(store, "s", "final", "t1", dict(CONFIG, epochs=4), flush_every=10.0, clock=clock)
    rec.start()
    assert _records(store)["t1"]["status"] == "running" and _records(store)["t1"]["epochs"] == 0
    clock.t = 9.9
    rec.epoch(1, _rows(1, 0.1), {"left": 1.0}, None)
    assert store.stored_epochs("t1") == 0  # within flush_every: buffered
    clock.t = 10.0
    rec.epoch(2, _rows(2, 0.2), None, {"wall_time_s": 2.0})
    assert store.stored_epochs("t1") == 2 and _records(store)["t1"]["epochs"] == 2  # rows, then the record
    assert store.trial_weights("t1") == {1: {"left": 1.0}}
    clock.t = 12.0
    rec.epoch(3, _rows(3, 0.3), None, None)
    assert store.stored_epochs("t1") == 2
    rec.epoch(4, _rows(4, 0.4), None, None)  # the last epoch: flushed, the final record follows
    assert store.stored_epochs("t1") == 4 and _records(store)["t1"]["epochs"] == 2
    rec.finish("completed")
    r = _records(store)["t1"]
    assert (r["status"], r["epochs"], r["wall_time_s"]) == ("completed", 4, 2.0)
    assert r["finished_at"] is not None


def test_recorder_restart_drops_buffered_epochs_from_the_restart_on(tmp_path) -> None:
    store = Store(tmp_path / "store")
    rec = TrialRecorder(store, "s", "final", "t1", dict(CONFIG, epochs=0), flush_every=1e9, clock=_Clock())
    for e, v in ((1, 0.1), (2, 0.2), (3, 0.3), (2, 0.8), (3, 0.9)):
        rec.epoch(e, _rows(e, v), {"left": v}, None)
    rec.finish("completed", epochs=None)
    df = analysis.load(store.root)
    got = sorted(zip(df["epoch"], df["value"]))
    assert [e for e, _ in got] == [1] * 4 + [2] * 4 + [3] * 4
    assert min(v for e, v in got if e == 2) == pytest.approx(0.8) and min(v for e, v in got if e == 1) == pytest.approx(0.1)
    assert store.trial_weights("t1") == {1: {"left": 0.1}, 2: {"left": 0.8}, 3: {"left": 0.9}}
    assert _records(store)["t1"]["epochs"] == 3


def test_recorder_without_a_known_length_buffers_until_the_end(tmp_path) -> None:
    store = Store(tmp_path / "store")
    config = {k: v for k, v in CONFIG.items() if k != "epochs"}
    rec = TrialRecorder(store, "s", "final", "t1", config, flush_every=1e9, clock=_Clock())
    rec.epoch(1, _rows(1, 0.1), None, None)
    rec.epoch(2, _rows(2, 0.1), None, None)
    assert store.stored_epochs("t1") == 0
    rec.finish("completed")
    assert store.stored_epochs("t1") == 2 and _records(store)["t1"]["epochs"] == 2
    short = TrialRecorder(store, "s", "final", "t2", CONFIG, total_epochs=1, flush_every=1e9, clock=_Clock())
    short.epoch(1, _rows(1, 0.1), None, None)  # total_epochs wins over the config's 2
    assert store.stored_epochs("t2") == 1


def test_recorder_failed_trial_keeps_its_epochs_and_error(tmp_path) -> None:
    store = Store(tmp_path / "store")
    rec = TrialRecorder(store, "s", "tune", "t1", dict(CONFIG), flush_every=1e9, clock=_Clock())
    rec.epoch(1, _rows(1, 0.1), None, None)
    rec.finish("failed", "boom", epochs=5, summary={"wall_time_s": 7.0})
    r = _records(store)["t1"]
    assert (r["status"], r["error"], r["epochs"], r["stage"], r["wall_time_s"]) == ("failed", "boom", 5, "tune", 7.0)
    assert store.stored_epochs("t1") == 1
    with pytest.raises(ValueError):
        rec.finish("unknown")


# --- run_jobs: what the driver hands Ray Tune (no cluster: Tune's Tuner is replaced by a recorder) -------------
class _Tuner:
    made: list["_Tuner"] = []

    def __init__(self, trainable, tune_config, run_config) -> None:
        self.trainable, self.tune_config, self.run_config = trainable, tune_config, run_config
        if "://" not in run_config.storage_path:
            Path(run_config.storage_path).mkdir(parents=True, exist_ok=True)  # as Tune does
        _Tuner.made.append(self)
        self.error: BaseException | None = None

    def fit(self) -> None:
        if _Tuner.raise_in_fit is not None:
            raise _Tuner.raise_in_fit


def _run_jobs(monkeypatch, tmp_path, spec, finished=True, raise_in_fit=None, ray_storage=None, jobs=()):
    from ray import tune

    from study import driver

    captured: dict[str, Any] = {}
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: captured.setdefault("resources", res) and fn)
    _Tuner.made, _Tuner.raise_in_fit = [], raise_in_fit
    monkeypatch.setattr(tune, "Tuner", _Tuner)
    monkeypatch.setattr(driver.tune_patches, "survive_lost_workers", lambda: None)
    monkeypatch.setattr(driver.tune_patches, "keep_secrets_out_of_runtime_env", lambda: None)
    monkeypatch.delenv("LITMUS_MAX_PENDING_TRIALS", raising=False)
    store = Store(spec.store)
    src = ListSource(list(jobs))
    src.finished = finished
    driver.run_jobs(spec, store, src, Progress("final", 1, 3, lambda s: None), ray_storage=ray_storage)
    return captured, _Tuner.made[0], store


def test_run_jobs_asks_tune_for_the_specs_cpu_and_gpu_share(monkeypatch, tmp_path) -> None:
    spec = _spec(tmp_path, resources={"cpu": 2, "gpu": 0.5}, retries=3)
    captured, tuner, store = _run_jobs(monkeypatch, tmp_path, spec)
    assert captured["resources"] == {"cpu": 2.0, "gpu": 0.5}
    assert tuner.tune_config.max_concurrent_trials == 3 and tuner.tune_config.num_samples == -1
    assert tuner.tune_config.reuse_actors is True and tuner.tune_config.scheduler is None
    assert tuner.run_config.failure_config.max_failures == 3
    assert tuner.run_config.checkpoint_config.num_to_keep == 2
    assert tuner.run_config.storage_path == str(store.root / "ray")
    assert re.fullmatch(r"drv-\d{8}-\d{6}-\d+", tuner.run_config.name)
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "3"
    assert os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] == "1"
    assert tuner.run_config.verbose == 0 and tuner.run_config.log_to_file is False
    t = SimpleTrial({"trial_id": "abc", "stage": "final"})
    assert tuner.tune_config.trial_dirname_creator(t) == "abc" and tuner.tune_config.trial_name_creator(t) == "abc"
    cpu_only = _spec(tmp_path / "b", resources={"cpu": 1})
    assert _run_jobs(monkeypatch, tmp_path, cpu_only)[0]["resources"] == {"cpu": 1.0, "gpu": 0}


def test_run_jobs_wires_the_searcher_the_store_writer_and_the_stopper(monkeypatch, tmp_path) -> None:
    spec = _spec(tmp_path)
    store = Store(spec.store)
    job = _job("t1")
    store.write_metrics({"study": "drv", "stage": "final", "trial_id": "t1", "dataset": "multi_digits", "arch": "hps",
                         "method": "uw", "distribution": None, "seed": 3},
                        [dict(r, epoch=1) for r in _rows(1, 0.5)])
    ck = _ckpt(store.root / "ray", "drv-20260101-120000-1", "t1", 0, 1)
    _, tuner, _ = _run_jobs(monkeypatch, tmp_path, spec, finished=False, jobs=[job])
    cfg = tuner.tune_config.search_alg.suggest("ray-1")
    assert cfg["litmus"]["trial_id"] == "t1" and cfg["litmus"]["resume_from"] == str(ck)
    writer = tuner.run_config.callbacks[0]
    trial = _Trial("t2")
    writer.on_trial_result(0, [], trial, _result(trial, 1, 0.25))
    tuner.run_config.stop.stopped["t2"] = 1  # the early stopper stopped it: completed, not pruned
    writer.on_trial_complete(0, [], trial)
    assert _records(store)["t2"]["status"] == "completed" and _records(store)["t2"]["error"] is None
    assert any(r["value"] == 0.25 for r in store.trial_metrics("t2"))
    # a relative Ray storage is made absolute; a URI is kept and never searched for checkpoints or cleaned
    monkeypatch.chdir(tmp_path)
    _, rel, _ = _run_jobs(monkeypatch, tmp_path, spec, ray_storage="rs")
    assert rel.run_config.storage_path == str((tmp_path / "rs").resolve())
    # a local folder that the URI would name as a path holds a checkpoint of t1: it is never searched
    _ckpt(Path("mock:") / "bucket" / "x", "drv-20260101-120000-1", "t1", 0, 1)
    _, uri, _ = _run_jobs(monkeypatch, tmp_path, spec, ray_storage="mock://bucket/x", jobs=[job])
    assert uri.run_config.storage_path == "mock://bucket/x"
    assert uri.tune_config.search_alg.suggest("ray-2")["litmus"]["resume_from"] is None


def test_run_jobs_removes_its_experiment_folders_only_when_the_study_finished(monkeypatch, tmp_path) -> None:
    spec = _spec(tmp_path)
    ray_dir = Path(spec.store) / "ray"
    old = ray_dir / "drv-20260101-120000-1"
    other = ray_dir / "other-20260101-120000-1"
    for d in (old, other):
        d.mkdir(parents=True)
    _run_jobs(monkeypatch, tmp_path, spec, finished=False)
    assert old.exists()  # an interrupted study keeps its checkpoints
    _run_jobs(monkeypatch, tmp_path, spec, finished=True)
    assert not old.exists() and other.exists()


def test_run_jobs_errors_name_what_tune_said(monkeypatch, tmp_path) -> None:
    from litmus.errors import RayRunError

    spec = _spec(tmp_path)
    with pytest.raises(RayRunError, match=r"Ray Tune stopped \(ValueError: first line\)"):
        _run_jobs(monkeypatch, tmp_path, spec, raise_in_fit=ValueError("first line\nsecond"))
    with pytest.raises(RayRunError, match=r"Ray Tune stopped \(KeyError: KeyError\)"):
        _run_jobs(monkeypatch, tmp_path, spec, raise_in_fit=KeyError())
    full = RuntimeError("wrapped")
    full.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/disk/x")
    with pytest.raises(NoSpaceError, match="no space left on /disk/x"):
        _run_jobs(monkeypatch, tmp_path, spec, raise_in_fit=full)


def test_the_asha_scheduler_scores_tuning_trials_on_validation_only(tmp_path) -> None:
    from ray.tune.schedulers import TrialScheduler

    from study.driver import _scheduler

    assert _scheduler(_spec(tmp_path)) is None
    spec = _spec(tmp_path, epochs=9, tuning={"methods": ["ew"], "trials": 2, "seeds": [100],
                                             "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3},
                                             "shared": {"lr": {"low": 1e-4, "high": 1e-2}}})
    sched = _scheduler(spec)
    assert (sched._reduction_factor, sched._max_t, sched._metric, sched._mode) == (3, 9, "score", "max")
    assert [r[0] for r in sched._brackets[0]._rungs] == [6, 2]  # milestones from the grace period 2
    assert sched._time_attr == "training_iteration"
    default = _scheduler(_spec(tmp_path, epochs=9, tuning={"methods": ["ew"], "trials": 2, "seeds": [100],
                                                         "scheduler": {"type": "asha"},
                                                         "shared": {"lr": {"low": 1e-4, "high": 1e-2}}}))
    assert default._reduction_factor == 2 and [r[0] for r in default._brackets[0]._rungs] == [8, 4, 2, 1]
    ref = {"left/accuracy": 0.5}
    trial = SimpleTrial({"stage": "final", "reference": ref})
    assert sched.on_trial_result(None, trial, {"rows": []}) == TrialScheduler.CONTINUE
    tuned = SimpleTrial({"stage": "tune", "label": "cand", "reference": ref})
    res = {"rows": [{"split": "val", "task": "left", "metric": "accuracy", "value": 0.6, "higher_is_better": True},
                    {"split": "test", "task": "left", "metric": "accuracy", "value": 0.9, "higher_is_better": True}],
           "training_iteration": 1}
    seen = []
    import ray.tune.schedulers as schedulers

    orig = schedulers.ASHAScheduler.on_trial_result
    try:
        schedulers.ASHAScheduler.on_trial_result = lambda self, tc, t, r: seen.append(r["score"]) or "CONTINUE"
        sched.on_trial_result(None, tuned, dict(res))
        reference = SimpleTrial({"stage": "tune", "label": "reference", "reference": ref})
        assert sched.on_trial_result(None, reference, dict(res)) == TrialScheduler.CONTINUE
    finally:
        schedulers.ASHAScheduler.on_trial_result = orig
    assert seen == [pytest.approx(20.0)]  # 100 * (0.6 - 0.5) / 0.5 on val; test would give 80
    done = []
    orig_c = schedulers.ASHAScheduler.on_trial_complete
    try:
        schedulers.ASHAScheduler.on_trial_complete = lambda self, tc, t, r: done.append(r)
        sched.on_trial_complete(None, tuned, dict(res))
        sched.on_trial_complete(None, reference, dict(res))
        sched.on_trial_complete(None, trial, dict(res))
    finally:
        schedulers.ASHAScheduler.on_trial_complete = orig_c
    assert len(done) == 1 and done[0]["score"] == pytest.approx(20.0) and done[0]["training_iteration"] == 1


class SimpleTrial:
    def __init__(self, litmus: dict) -> None:
        self.config = {"litmus": litmus, "train": dict(CONFIG)}


def test_the_early_stopper_scores_against_the_jobs_reference(tmp_path) -> None:
    from study.driver import _early_stopper

    store = Store(tmp_path / "store")
    stopper = _early_stopper(store)
    ref = {"left/accuracy": 0.5}

    def result(epoch, value, reference=ref):
        return {"status": "running", "epoch": epoch,
                "rows": [{"split": "val", "task": "left", "metric": "accuracy", "value": value,
                          "higher_is_better": True}],
                "config": {"litmus": {"trial_id": "t1", "patience": 1, "reference": reference},
                           "train": dict(CONFIG, epochs=5)}}

    assert not stopper("r", result(1, 0.6))
    assert not stopper("r", result(2, 0.7))
    assert stopper("r", result(3, 0.65)) and stopper.stopped == {"t1": 3}
    with pytest.raises(RuntimeError, match=r"no EW reference for multi_digits \(hps\): cannot stop early"):
        stopper("r2", {**result(1, 0.6, reference=None),
                       "config": {"litmus": {"trial_id": "t2", "patience": 1}, "train": dict(CONFIG, epochs=5)}})
