"""The driver's cost per trial is flat (issue 13): Ray Tune holds only the trials in flight, never the finished ones."""

from __future__ import annotations

import gc
import weakref

import pytest
import ray

from study import driver, tune_patches
from study.run import run_study
from study.spec import parse
from study.store import Store

TINY = {"n_train": 100, "n_val": 50, "n_test": 50, "width": 8}


@pytest.fixture(autouse=True)
def _ray_down():
    yield
    ray.shutdown()


@pytest.mark.slow
def test_tune_forgets_finished_trials_and_every_trial_is_recorded_once(tmp_path, monkeypatch):
    n, cpus = 16, 2
    seen: list[dict[str, int]] = []
    forgotten: list[str] = []
    gone: list[weakref.ref] = []  # the Trial objects Tune's controller forgot
    survivors: list[int] = []  # how many of those forgotten at an earlier step were still alive at a later one
    original = tune_patches._forget

    def probe(controller) -> int:
        before = {t.trial_id: t for t in controller._trials}
        k = original(controller)
        after = {t.trial_id for t in controller._trials}
        forgotten.extend(sorted(set(before) - after))
        if set(before) - after:
            gc.collect()
            survivors.append(sum(r() is not None for r in gone))
            gone.extend(weakref.ref(t) for tid, t in before.items() if tid not in after)
        seen.append({"trials": len(controller._trials), "json": len(controller._trial_metadata),
                     "stopped": len(controller._stopped_trials) + len(controller._failed_trials)})
        return k

    monkeypatch.setattr(tune_patches, "_forget", probe)
    spec = parse({"name": "flat", "store": str(tmp_path / "store"),
                  "datasets": [{"name": "multi_digits", "options": TINY, "epochs": 1}],
                  "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": n}})
    res = run_study(spec, num_cpus=cpus, say=lambda m: None)
    assert res.counts == {"completed": n, "failed": 0, "diverged": 0, "missing": 0}
    # every trial once in the store, and each forgotten by Tune once, after it finished
    trials = Store(spec.store).trials("flat")
    assert len(trials) == n and {t["status"] for t in trials} == {"completed"}
    assert len(forgotten) == len(set(forgotten)) == n
    # what Tune holds stays bounded by the trials in flight (running + pending, at most 2 x the slots), not n
    assert seen and max(s["trials"] for s in seen) <= 2 * cpus + 1
    assert max(s["json"] for s in seen) <= 2 * cpus + 1
    assert all(s["stopped"] == 0 for s in seen)  # nothing finished survives a step
    # and nothing else in the driver holds a forgotten trial (Tune's own progress callback kept them all)
    assert len(survivors) >= 2 and max(survivors) == 0, survivors
    # the rerun of the finished study is answered by the store: no Ray is started, nothing is written
    files = sorted((p.relative_to(spec.store), p.stat().st_mtime_ns) for p in spec.store.rglob("*.parquet"))
    ray.shutdown()

    def no_ray(*a, **k):
        raise AssertionError("a finished study must not start Ray")

    monkeypatch.setattr("study.driver.connect", no_ray)
    said: list[str] = []
    again = run_study(spec, num_cpus=cpus, say=said.append)
    assert again.counts == res.counts and not ray.is_initialized()
    assert said[0].endswith("every trial is in the store, nothing to run")
    assert f"[final] {n}/{n} trials already in the store: skipped" in said
    assert sorted((p.relative_to(spec.store), p.stat().st_mtime_ns) for p in spec.store.rglob("*.parquet")) == files


def test_tunes_default_callbacks_keep_no_finished_trial(monkeypatch):
    """Tune adds a ``TrialProgressCallback`` to every run given none, which keys dictionaries by ``Trial`` and never
    drops them (every finished trial alive in the driver: ~130 KB each). The driver's silent stand-in keeps
    nothing, and Tune then adds no callback of its own that does."""
    from ray.tune.experiment import Trial
    from ray.tune.progress_reporter import TrialProgressCallback
    from ray.tune.utils.callback import _create_default_callbacks

    for key, value in driver.QUIET_RAY_ENV.items():  # as run_jobs runs Tune (no file loggers)
        monkeypatch.setenv(key, value)

    def survives(callbacks: list) -> bool:
        trial = Trial("train_trial", config={"x": 1}, stub=True)
        result = {"training_iteration": 1, "done": True}
        for cb in callbacks:
            cb.on_trial_start(iteration=1, trials=[trial], trial=trial)
            cb.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result)
            cb.on_trial_complete(iteration=1, trials=[trial], trial=trial)
        ref = weakref.ref(trial)
        del trial
        gc.collect()
        return ref() is not None

    tunes = _create_default_callbacks([], metric=None)
    assert any(type(cb) is TrialProgressCallback for cb in tunes)
    assert survives(tunes)  # Ray 2.60's own default: the trial outlives its run (why the stand-in exists)
    ours = _create_default_callbacks([driver._silent_progress()], metric=None)
    assert not any(type(cb) is TrialProgressCallback for cb in ours)
    assert not survives(ours)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_the_drivers_heap_trim_returns_free_chunks_between_live_ones():
    """trainables.heap.release_freed_heap (called by the driver every RELEASE_HEAP_EVERY finished trials): the pages of
    free chunks scattered between live ones go back to the kernel, which glibc's own trim (the heap's top only) never does."""
    import ctypes

    from trainables import heap

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size, n = 64 * 1024, 1600  # 100 MB in chunks below glibc's mmap threshold: on the heap
    blocks = [libc.malloc(size) for _ in range(n)]
    for b in blocks:
        ctypes.memset(b, 1, size)  # resident
    keep = blocks[::16]  # one live chunk in 16: the free ones cannot coalesce into the heap's top
    for b in blocks:
        if b not in keep:
            libc.free(b)
    before = _rss_kb()
    assert heap.release_freed_heap() is True
    released = before - _rss_kb()
    for b in keep:
        libc.free(b)
    assert released > 0.7 * (n - len(keep)) * size / 1024, (before, released)
