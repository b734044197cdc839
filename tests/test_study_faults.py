"""Resume after the driver is SIGKILLed, and a multi-node study that loses a worker node mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml

from study.run import run_study
from study.spec import parse
from study.store import Store

ROWS = 12  # multi_digits rows per epoch
OPTS = {"n_train": 600, "n_val": 100, "n_test": 100, "width": 8}


def _metrics(root: Path):
    # every metric row, per-trial parts and compacted files alike (the driver compacts at each stage's end)
    import analysis

    return analysis.load(root, include_loss=True).drop(columns=["variant", "status"])


def _completed(root: Path) -> int:
    try:
        return sum(t["status"] == "completed" for t in Store(root).trials())
    except Exception:  # noqa: BLE001 - a file being replaced while polling
        return 0


def _run_then_kill(spec_d: dict, tmp_path: Path, ready, timeout: float = 180) -> None:
    """Run ``litmus run`` on ``spec_d`` in a subprocess and SIGKILL it (driver and its embedded Ray, one
    session) as soon as ``ready()`` holds; fail if the study finished first."""
    path = tmp_path / f"{spec_d['name']}.yaml"
    path.write_text(yaml.safe_dump(spec_d))
    litmus = str(Path(sys.executable).parent / "litmus")
    proc = subprocess.Popen([litmus, "run", str(path)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not ready() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the study finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_driver_killed_mid_run_then_resumed(tmp_path, local_ray):
    spec_d = {
        "name": "crash", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": 2}],
        "methods": ["ew", "uw"],
        "tuning": {"trials": 3, "seeds": [100], "shared": {"lr": {"low": 1e-4, "high": 1e-2}}},
        "final": {"seeds": 3},
    }
    root = tmp_path / "store"
    _run_then_kill(spec_d, tmp_path, lambda: _completed(root) >= 4)
    before = {t["trial_id"]: t for t in Store(root).trials() if t["status"] == "completed"}
    assert len(before) >= 4
    res = run_study(parse(spec_d), say=lambda m: None, keep_ray=True)
    assert res.counts == {"completed": 6, "failed": 0, "diverged": 0, "missing": 0}
    trials = Store(root).trials("crash")
    assert len(trials) == 1 + 2 * 3 + 2 * 3 and all(t["status"] == "completed" for t in trials)
    for t in trials:  # trials finished before the kill were not run again
        if t["trial_id"] in before:
            assert (t["started_at"], t["finished_at"]) == (before[t["trial_id"]]["started_at"],
                                                           before[t["trial_id"]]["finished_at"])
    df = _metrics(root)
    assert len(df) == len(trials) * 2 * ROWS
    assert not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.log")))
    for m in ("ew", "uw"):
        st = optuna.load_study(study_name=f"crash/multi_digits/hps/{m}", storage=storage)
        assert len(st.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in st.trials)


@pytest.mark.slow
def test_multi_node_study_survives_a_worker_node_removed_mid_run(tmp_path, own_ray):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # trials on the head and on a worker
    workers = [cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    spec = parse({
        "name": "nodes", "store": str(tmp_path / "store"), "retries": 3,
        "datasets": [{"name": "multi_digits", "options": {**OPTS, "n_train": 1500}, "epochs": 3}],
        "methods": ["ew", {"name": "rlw", "distributions": ["normal", "uniform"]}],
        "tuning": {"methods": "none"}, "final": {"seeds": 3},
    })
    removed = threading.Event()

    def kill_a_worker() -> None:
        deadline = time.time() + 240
        while _completed(spec.store) < 2 and time.time() < deadline:
            time.sleep(0.2)
        cluster.remove_node(workers[0], allow_graceful=False)
        removed.set()

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    try:
        said: list[str] = []
        res = run_study(spec, address=cluster.address, say=said.append)
    finally:
        ray.shutdown()
        killer.join(timeout=5)
        cluster.shutdown()
    assert removed.is_set()
    assert res.counts == {"completed": 9, "failed": 0, "diverged": 0, "missing": 0}
    # a trial running on the lost node was interrupted, retried by Ray and finished whole
    retried = {m.split("trial ", 1)[1].split(" ", 1)[0] for m in said if "failed, retrying" in m}
    assert retried, said
    df = _metrics(spec.store)
    records = {t["trial_id"]: t for t in Store(spec.store).trials()}
    for tid in retried:
        assert records[tid]["status"] == "completed" and records[tid]["epochs"] == 3
        assert len(df[df.trial_id == tid]) == 3 * ROWS
    assert len(df) == 9 * 3 * ROWS
    assert not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()


def _running_epochs(root: Path) -> int:
    try:
        return max((t["epochs"] or 0 for t in Store(root).trials() if t["status"] == "running"), default=0)
    except Exception:  # noqa: BLE001 - a file being replaced while polling
        return 0


@pytest.mark.slow
def test_trial_cut_by_a_driver_kill_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, local_ray):
    monkeypatch.setenv("LITMUS_FLUSH_SECONDS", "0")  # every epoch in the store at once (the kill waits for 2)
    spec_d = {
        "name": "ckpt", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": {**OPTS, "n_train": 6000}, "epochs": 10}],
        "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": 1},
    }
    root = tmp_path / "store"
    _run_then_kill(spec_d, tmp_path, lambda: _running_epochs(root) >= 2)
    assert [t["status"] for t in Store(root).trials()] == ["running"]
    said: list[str] = []
    res = run_study(parse(spec_d), say=said.append, keep_ray=True)
    assert res.counts == {"completed": 1, "failed": 0, "diverged": 0, "missing": 0}
    resumed = [m for m in said if "resumed from its checkpoint at epoch" in m]
    assert len(resumed) == 1 and int(resumed[0].rsplit(" ", 1)[1]) >= 1, said
    df = _metrics(root)
    assert len(df) == 10 * ROWS and not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()
    # a complete study needs no checkpoint any more: its Ray experiment directories are removed
    assert not [d for d in (root / "ray").iterdir() if d.is_dir()]


def _tune_done(root: Path) -> int:
    try:
        return sum(t["stage"] == "tune" and t["status"] == "completed" for t in Store(root).trials())
    except Exception:  # noqa: BLE001 - a file being replaced while polling
        return 0


def _snapshot(root: Path, name: str) -> tuple[dict, dict, dict]:
    """(trial id -> (config, status), trial id -> metric values, Optuna study -> trials) of a finished store."""
    trials = {t["trial_id"]: (t["config"], t["status"]) for t in Store(root).trials(name)}
    df = _metrics(root).sort_values(["trial_id", "split", "epoch", "task", "metric"])
    values = {tid: list(g["value"]) for tid, g in df.groupby("trial_id")}
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.log")))
    studies = {}
    for s in optuna.get_all_study_summaries(storage):
        st = optuna.load_study(study_name=s.study_name, storage=storage)
        studies[s.study_name] = [(t.number, t.params, t.state, t.value) for t in st.trials]
    return trials, values, studies


@pytest.mark.slow
def test_driver_killed_during_tuning_resumes_to_the_uninterrupted_study(tmp_path, local_ray):
    def spec_d(store: Path) -> dict:
        return {
            "name": "tunekill", "store": str(store),
            "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": 2}],
            "methods": ["ew", "uw"],
            "tuning": {"trials": 4, "seeds": [100], "shared": {"lr": {"low": 1e-4, "high": 1e-2}},
                       "sampler": {"type": "tpe", "startup": 2}},
            "final": {"seeds": 2},
        }
    res = run_study(parse(spec_d(tmp_path / "whole")), say=lambda m: None, keep_ray=True)
    assert res.counts["completed"] == 4
    expected = _snapshot(tmp_path / "whole", "tunekill")
    assert len(expected[0]) == 1 + 2 * 4 + 2 * 2
    root = tmp_path / "killed"
    # killed in the model-based phase: the start-up trials of both methods and one more are in the store
    _run_then_kill(spec_d(root), tmp_path, lambda: _tune_done(root) >= 6)
    assert any(t["stage"] == "tune" for t in Store(root).trials()) and not any(
        t["stage"] == "final" for t in Store(root).trials())
    res = run_study(parse(spec_d(root)), say=lambda m: None, keep_ray=True)
    assert res.counts["completed"] == 4
    assert _snapshot(root, "tunekill") == expected
