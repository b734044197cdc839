"""A whole study: validate, connect, reference -> tuning -> final, then the summary.

Rerunning the same spec resumes: trials finished in the store are skipped
(failed and diverged ones too, unless ``retry_failed``), the rest run again,
and the store is the source of truth for what is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from . import driver
from .final import ListSource, pending
from .plan import final_jobs, reference_jobs, save_plan, tuned_methods
from .spec import Spec
from .store import Store
from .tuning import TuningSource, best_params, reference_values


@dataclass
class StudyResult:
    store: Store
    counts: dict[str, int]
    seconds: float


class StudyError(ValueError):
    """The study cannot go on (e.g. every EW reference trial failed)."""


def _counts(store: Store, spec: Spec, ids: list[str]) -> dict[str, int]:
    st = store.statuses(spec.name)
    out = {"completed": 0, "failed": 0, "diverged": 0, "missing": 0}
    for tid in ids:
        s = st.get(tid)
        out[s if s in out else "missing"] += 1
    return out


def run_study(spec: Spec, address: str | None = None, retry_failed: bool = False,
              say: Callable[[str], None] = print, num_cpus: int | None = None,
              ray_storage: str | None = None, keep_ray: bool = False) -> StudyResult:
    """Run (or resume) ``spec``; returns the final stage's status counts."""
    t0 = time.time()
    store = Store(spec.store)  # fails early if not writable
    refs = reference_jobs(spec)
    save_plan(spec, store.root, refs, None)
    resources = driver.connect(spec, address, num_cpus)
    slots = driver.concurrency(spec, resources)
    say(f"litmus run: study {spec.name!r} -> {store.root} ({slots} concurrent trials on "
        f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)")
    try:
        # 1. the EW reference on the tuning seeds
        if refs:
            todo = pending(refs, store.statuses(spec.name), retry_failed)
            prog = driver.Progress("reference", len(refs), slots, say, skipped=len(refs) - len(todo))
            if todo:
                driver.run_jobs(spec, store, ListSource(todo), "tune", prog, ray_storage)
            statuses = store.statuses(spec.name)
            references = {}
            for ds in spec.datasets:
                for arch in spec.archs:
                    ids = [j.trial_id for j in refs if j.config["dataset"] == ds.name and j.config["arch"] == arch
                           and statuses.get(j.trial_id) == "completed"]
                    if not ids:
                        raise StudyError(f"every EW reference trial on {ds.name} ({arch}) failed; "
                                         f"see `litmus status {store.root}`")
                    references[(ds.name, arch)] = reference_values(store, ids)
                    driver.set_reference(ds.name, arch, references[(ds.name, arch)])
            # 2. tuning: every method's Optuna trials interleaved in one Ray Tune run
            total = sum(spec.tuning.trials * len(spec.tuning.seeds) for _ in spec.datasets for _ in spec.archs
                        for _ in tuned_methods(spec))
            source = TuningSource(spec, store, references, store.statuses(spec.name), retry_failed)
            prog = driver.Progress("tune", total, slots, say)
            driver.run_jobs(spec, store, source, "tune", prog, ray_storage)
        best = best_params(spec, store) if refs else {}
        # 3. final: every dataset x arch x method x distribution x seed
        jobs = final_jobs(spec, best)
        save_plan(spec, store.root, refs, jobs)
        todo = pending(jobs, store.statuses(spec.name), retry_failed)
        prog = driver.Progress("final", len(jobs), slots, say, skipped=len(jobs) - len(todo))
        if todo:
            driver.run_jobs(spec, store, ListSource(todo), "final", prog, ray_storage)
        return StudyResult(store, _counts(store, spec, [j.trial_id for j in jobs]), time.time() - t0)
    finally:
        if not keep_ray:
            driver.shutdown()
