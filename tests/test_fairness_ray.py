"""End-to-end checks on real Ray (tiny trials): GPU packing on a fake-GPU cluster, and a resumed
study that skips what the store holds (completed, and failed unless --retry-failed).

Slow (Ray's start-ups: 2-5 minutes on the shared 2-core machine): the fast suite catches the same planted
bugs without Ray in tests/test_mutants_driver.py (docs/testing.md, "Planted bugs")."""

from __future__ import annotations

import threading
import time

import pytest
import ray

from study.plan import final_jobs
from study.records import group, trial_record
from study.run import run_study
from study.spec import parse
from study.store import Store

pytestmark = pytest.mark.slow

TINY = {"n_train": 32, "n_val": 16, "n_test": 16, "width": 4}


def _spec(tmp_path, name: str, seeds: int, **extra):
    return parse({"name": name, "store": str(tmp_path / "store"),
                  "datasets": [{"name": "multi_digits", "options": TINY, "epochs": 1, "train": {"batch_size": 16}}],
                  "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": seeds},
                  "checkpoint_every": 0, **extra})


def test_gpu_share_packs_trials_on_a_fake_gpu_cluster(tmp_path) -> None:
    """resources.gpu 0.5 on a node with 1 GPU and 3 CPUs: 2 concurrent trials (not 3), both on the GPU."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 1})  # one node: one start
    cluster.wait_for_nodes()
    spec = _spec(tmp_path, "gpu", 4, resources={"cpu": 1, "gpu": 0.5})
    said: list[str] = []
    seen = {"min_gpu_free": 1.0, "max_cpu_used": 0.0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if ray.is_initialized():
                try:
                    free = ray.available_resources()
                    seen["min_gpu_free"] = min(seen["min_gpu_free"], free.get("GPU", 0.0))
                    seen["max_cpu_used"] = max(seen["max_cpu_used"], 3.0 - free.get("CPU", 0.0))
                except Exception:  # noqa: BLE001 - Ray starting or stopping: no sample
                    pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        res = run_study(spec, address=cluster.address, say=said.append)
    finally:
        stop.set()
        watcher.join()
        ray.shutdown()
        cluster.shutdown()
    assert res.counts == {"completed": 4, "failed": 0, "diverged": 0, "missing": 0}
    assert any("(2 concurrent trials on 3 CPUs, 1 GPUs)" in m for m in said), said[:3]
    assert seen["min_gpu_free"] == 0.0, "two trials never held the GPU's two halves at once"
    assert seen["max_cpu_used"] <= 2.0
    assert {t["device"] for t in Store(spec.store).trials()} == {"cpu"}  # no CUDA here: the share is a reservation


def _finished(root) -> dict[str, tuple]:
    return {t["trial_id"]: (t["seed"], t["status"], t["started_at"], t["finished_at"]) for t in Store(root).trials()}


def _ran(said: list[str]) -> list[str]:
    """The trials a run trained (one progress line each)."""
    return [m.rsplit("seed ", 1)[1] for m in said if m.startswith("[final") and "seed " in m and " done " in m]


def test_resume_skips_completed_and_failed_trials_and_retry_failed_reruns(tmp_path, local_ray) -> None:
    spec = _spec(tmp_path, "resume", 3)
    store = Store(spec.store)
    failed = next(j for j in final_jobs(spec, {}) if j.config["seed"] == 2)  # failed in an earlier run
    store.write_trial(trial_record(group(spec.name, "final", failed.trial_id, failed.config), failed.config, "failed",
                                   epochs=0, started_at="earlier", error="RuntimeError: planted"))
    said: list[str] = []
    res = run_study(spec, say=said.append, keep_ray=True)
    assert res.counts == {"completed": 2, "failed": 1, "diverged": 0, "missing": 0}
    assert sorted(_ran(said)) == ["0: completed", "1: completed"]
    assert any("1/3 trials already in the store: skipped" in m for m in said)
    first = _finished(store.root)

    said.clear()  # a rerun: everything finished is skipped, nothing is trained again
    res = run_study(spec, say=said.append, keep_ray=True)
    assert res.counts == {"completed": 2, "failed": 1, "diverged": 0, "missing": 0}
    assert _ran(said) == [] and any("3/3 trials already in the store: skipped" in m for m in said)
    assert _finished(store.root) == first

    said.clear()  # --retry-failed: only the failed trial runs again
    res = run_study(spec, say=said.append, keep_ray=True, retry_failed=True)
    assert res.counts == {"completed": 3, "failed": 0, "diverged": 0, "missing": 0}
    assert _ran(said) == ["2: completed"]
    after = _finished(store.root)
    assert {k: v for k, v in after.items() if k != failed.trial_id} == \
        {k: v for k, v in first.items() if k != failed.trial_id}
    assert after[failed.trial_id][1] == "completed"
    import analysis

    df = analysis.load(store.root)
    assert len(df) == 3 * 3 * 2 and not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()
