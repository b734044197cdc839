"""Settings for the whole test session.

One intra-op thread per test process: the models of the tests are tiny, and on the shared 2-core machine
two OpenMP threads spin against each other and against other processes (five trainer tests: 279 s with
2 threads, 76 s with 1, at a load average of 6-14; docs/testing.md). Set before torch is imported, so
subprocesses (the CLI tests) inherit it; a trial on Ray sets its own thread count from its CPUs
(trainables/tune.py), and a TrainConfig's ``num_threads`` still sets it for that trainer.
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject addopts): two test processes on a machine with two or more CPUs, none (the tests run
    in the pytest process itself) with one. Each worker runs its own embedded Ray on 2 CPUs when a module needs
    one (num_cpus is a logical count: two Rays on 2 cores share them); more workers would only oversubscribe the
    2-core machine this suite is timed on. ``PYTEST_XDIST_AUTO_NUM_WORKERS=N`` or ``-n N`` overrides it;
    ``-n 0`` runs everything in one process (a debugger, mutmut). ``--dist loadfile`` (addopts) keeps a module's
    tests on one worker, so its module-scoped fixtures (``local_ray``'s shared Ray, a module's data or store) are
    built once. (Not ``loadgroup``: xdist 3.8 marks groups through ``item._nodeid``, which pytest 9.2 no longer
    reads, so its groups are silently ignored: pytest-xdist issue 1386.)"""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    n = min(2, _cpus())
    return n if n > 1 else 0


#: a slow test (an end-to-end Ray study: minutes) counts as this many fast ones when the workers' files are ordered
SLOW_WEIGHT = 100


@pytest.hookimpl(trylast=True)  # after -m / -k deselected their tests
def pytest_collection_modifyitems(config, items) -> None:
    """On an xdist worker, the longest test files first (longest processing time first: the last file a worker
    starts is a short one, not a Ray study running alone at the end). A file's weight is its number of tests,
    a slow one counting ``SLOW_WEIGHT``; the order within a file is kept, and every worker sorts the same way
    (xdist requires identical collections). xdist's own reordering (by test count) is off in addopts
    (``--no-loadscope-reorder``), so the scheduler hands the files out in this order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    weight: dict[str, int] = {}
    for item in items:
        f = item.nodeid.split("::")[0]
        weight[f] = weight.get(f, 0) + (SLOW_WEIGHT if item.get_closest_marker("slow") else 1)
    first = {f: i for i, f in enumerate(weight)}
    items.sort(key=lambda it: (-weight[it.nodeid.split("::")[0]], first[it.nodeid.split("::")[0]]))


def pytest_collection_finish(session) -> None:
    """Move everything the imports of the collected modules made (torch, Ray, pandas, ...: millions of
    objects) to the garbage collector's permanent generation: a full collection then scans only what the
    tests allocate. statsmodels' Holm calls gc.collect() on every call (1.5 s each with the suite imported:
    test_local_levels_decide_exactly_as_adjusted_p took 61 s under load)."""
    gc.freeze()


@pytest.fixture(scope="module")
def _module_ray():
    """Ends the module's shared embedded Ray (if one is running) after the module's last test."""
    yield
    import ray

    from study import driver

    if ray.is_initialized():
        driver.shutdown()


@pytest.fixture
def local_ray(_module_ray):
    """One embedded local Ray (loopback, private temp dir, 2 CPUs: study/ray_local.py) shared by a module's
    studies, which run with ``keep_ray=True``: Ray's start-up (seconds, tens of seconds under load) is paid
    once per module. Started again if a test's ``litmus run`` (which ends its Ray) stopped it."""
    import ray

    from study import driver, ray_local

    if not ray.is_initialized():
        driver.quiet_ray()  # the environment `litmus run` gives Ray's processes (driver.connect)
        ray_local.start(2)


@pytest.fixture
def own_ray():
    """For a test that starts its own Ray (a multi-node cluster, or an embedded Ray it inspects) in a module
    whose other tests share one: the shared Ray is ended first (a running Ray would be reused by the driver)."""
    import ray

    from study import driver

    if ray.is_initialized():
        driver.shutdown()
