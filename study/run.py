"""A whole study in one Ray Tune run: the EW reference -> tuning -> final stage, then the summary.

One ``Tuner.fit()`` drives every stage (actors are started once and reused):
a :class:`StudySource` yields the reference trials, then (once they are in
the store) the Optuna-sampled tuning trials of all methods interleaved, then
(once every Optuna trial is told) the final trials with the tuned
hyperparameters. Rerunning the same spec resumes: trials finished in the
store are skipped (failed and diverged ones too, unless ``retry_failed``);
the store is the source of truth for what is done.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from analysis.schema import FINISHED, Stage, Status
from litmus.errors import StudyError  # noqa: F401 - part of this module's interface

from . import driver, ray_local, rounds, tuning
from .driver import NO_MORE_JOBS, Outcome
from .progress import Progress
from .compact import compact
from .final import ListSource, pending
from .preflight import check_reachable
from .lock import StoreLock
from .plan import Job, final_jobs, reference_jobs, save_plan, tuned_methods
from .saved_plan import load_plan
from .spec import Spec
from .store import Store
from .tuning import TuningSource, best_params, load_best, reference_values
from .workers import check_nodes


@dataclass
class StudyResult:
    store: Store
    counts: dict[str, int]
    seconds: float


class StudySource:
    """Chains the stages; a stage starts when the previous one is finished (``None`` = wait)."""

    def __init__(self, spec: Spec, store: Store, progress: Progress, retry_failed: bool = False) -> None:
        self.spec, self.store, self.progress, self.retry_failed = spec, store, progress, retry_failed
        self.refs = reference_jobs(spec)
        self.references: dict[tuple[str, str], dict[str, float]] = {}  # (dataset, arch) -> EW validation means
        self.final: list[Job] = []
        self.stage = ""
        self.current: Any = None
        self.in_flight = 0
        self.finished = False  # every stage handed out and done
        self._primed: Job | None = None
        self._start("reference" if self.refs else "final")

    def prime(self) -> bool:
        """Take the first job now (before Ray starts); False if the store already holds the whole study."""
        job = self.next()
        if job == NO_MORE_JOBS:
            return False
        self._primed = job if isinstance(job, Job) else None
        return True

    def _start(self, stage: str) -> None:
        self.stage = stage
        statuses = self.store.statuses(self.spec.name)
        if stage == "reference":
            todo = pending(self.refs, statuses, self.retry_failed)
            self.current = ListSource(todo)
            self.progress.reset("reference", len(self.refs), len(self.refs) - len(todo))
        elif stage == "tune":
            refs = self.references = {}
            for ds in self.spec.datasets:
                for arch in self.spec.archs:
                    ids = [j.trial_id for j in self.refs if j.config["dataset"] == ds.name
                           and j.config["arch"] == arch and statuses.get(j.trial_id) == Status.COMPLETED]
                    if not ids:
                        raise StudyError(f"every EW reference trial on {ds.name} ({arch}) failed; "
                                         f"see `litmus status {self.store.root}`")
                    refs[(ds.name, arch)] = reference_values(self.store, ids)
                    zero = sorted(k for k, v in refs[(ds.name, arch)].items() if v == 0)
                    if zero:
                        raise StudyError(f"the EW reference on {ds.name} ({arch}) has validation {', '.join(zero)} "
                                         "= 0: Delta-m (a relative change) is undefined against it")
            total = self.spec.tuning.trials * len(self.spec.tuning.seeds) * self.spec.tuning.replicates \
                * len(self.spec.datasets) * len(self.spec.archs) * len(tuned_methods(self.spec))
            finished = (Status.COMPLETED,) if self.retry_failed else FINISHED
            refs_ids = {j.trial_id for j in self.refs}  # the EW references are stored in the tune stage too
            done = sum(1 for r in self.store.trials(self.spec.name)
                       if r["stage"] == Stage.TUNE and r["status"] in finished and r["trial_id"] not in refs_ids)
            self.progress.reset("tune", total, min(done, total))
            self.current = TuningSource(self.spec, self.store, refs, statuses, self.retry_failed)
        else:
            best = best_params(self.spec, self.store) if self.refs else {}
            planned = [replace(j, reference=self.references.get((j.config["dataset"], j.config["arch"])))
                       for j in final_jobs(self.spec, best)]  # the reference travels in the Job (early stopping)
            save_plan(self.spec, self.store.root, self.refs, planned)
            if self.spec.sequential:  # seeds in rounds, where verdicts are open (study/rounds.py)
                self.current = rounds.RoundSource(self.spec, self.store, planned, self.progress, self.retry_failed)
                self.final = self.current.jobs
                return
            self.final = planned
            todo = pending(self.final, statuses, self.retry_failed)
            self.progress.reset("final", len(self.final), len(self.final) - len(todo))
            self.current = ListSource(todo)

    def next(self) -> Job | None | str:
        if self._primed is not None:
            job, self._primed = self._primed, None
            return job
        while True:
            job = self.current.next()
            if not isinstance(job, str):
                if job is not None:
                    self.in_flight += 1
                return job
            if self.in_flight:  # the stage's last trials are still running
                return None
            compact(self.store)  # the stage is over: merge its trials' files (study/compact.py)
            if self.stage == "final":
                self.finished = True
                return NO_MORE_JOBS
            self._start("tune" if self.stage == "reference" else "final")

    def done(self, job: Job, outcome: Outcome) -> None:
        self.in_flight -= 1
        self.current.done(job, outcome)


def _counts(store: Store, spec: Spec, ids: list[str]) -> dict[str, int]:
    st = store.statuses(spec.name)
    out = {"completed": 0, "failed": 0, "diverged": 0, "missing": 0}
    for tid in ids:
        s = st.get(tid)
        out[s if s in out else "missing"] += 1
    return out


#: spec fields that say where the spec and store are, not what runs (a moved spec file is the same study)
WHERE = ("source", "store")


def finished_study(spec: Spec, store: Store, retry_failed: bool = False) -> list[str] | None:
    """The final trial ids of the saved plan when the store already holds the whole study it describes, else
    None (then the stages are walked as usual). Reads the plan file and two columns of the trials table, never
    the metrics, and re-derives one final trial id per cell (its first seed), not every id: a trial id hashes
    the resolved config, in which only the seed differs between a cell's trials, so a cell whose first id is
    in the plan was planned from this spec with these defaults (a changed default changes every id).
    Sequential final stages (seeds in rounds) always take the usual path."""
    if spec.sequential:
        return None
    saved = load_plan(store.root, spec.name)
    if not saved or saved[0].get("final_ids") is None:
        return None
    plan = saved[0]
    now = json.loads(json.dumps(spec.to_json(), sort_keys=True, default=str))
    if {k: v for k, v in plan["spec"].items() if k not in WHERE} != {k: v for k, v in now.items() if k not in WHERE}:
        return None  # the spec changed since the plan was saved
    statuses = store.statuses(spec.name)
    if retry_failed and any(s in FINISHED and s != Status.COMPLETED for s in statuses.values()):
        return None  # something to run again (tuning trials included)
    finished = (Status.COMPLETED,) if retry_failed else FINISHED
    final_ids = list(plan["final_ids"])
    if any(statuses.get(t) not in finished for t in [*(plan.get("reference_ids") or []), *final_ids]):
        return None
    refs = reference_jobs(spec)
    if [j.trial_id for j in refs] != list(plan.get("reference_ids") or []):
        return None
    best: dict = {}
    if refs:
        best = load_best(store, spec.name)  # the tuned hyperparameters the final stage was planned with
        if tuned_methods(spec) and not best:
            return None
    first = final_jobs(replace(spec, final_seeds=spec.final_seeds[:1]), best)
    planned = set(final_ids)
    if len(final_ids) != len(first) * len(spec.final_seeds) or any(j.trial_id not in planned for j in first):
        return None
    return final_ids


def run_study(spec: Spec, address: str | None = None, retry_failed: bool = False,
              say: Callable[[str], None] = print, num_cpus: int | None = None,
              ray_storage: str | None = None, keep_ray: bool = False, live: bool = False) -> StudyResult:
    """Run (or resume) ``spec``; returns the final stage's status counts. ``live``: redraw one status
    line on stderr when it is a terminal (a line per trial otherwise)."""
    tuning.quiet_optuna()
    t0 = time.time()
    check_reachable(spec, say)  # data and pretrained weights, before Ray starts
    driver.check_local_gpus(spec, address)  # before anything is written
    store = Store(spec.store)  # fails early if not writable
    lock = StoreLock(store.root, say).acquire()  # one driver per store; refuses if another run holds it
    try:
        return _run(spec, store, lock, t0, address, retry_failed, say, num_cpus, ray_storage, keep_ray, live)
    finally:
        lock.release()


def _run(spec: Spec, store: Store, lock: StoreLock, t0: float, address: str | None, retry_failed: bool,
         say: Callable[[str], None], num_cpus: int | None, ray_storage: str | None, keep_ray: bool,
         live: bool) -> StudyResult:
    done = finished_study(spec, store, retry_failed)
    if done is not None:  # a finished study: the plan and the trials table answer, no Ray, no metrics read
        compact(store)  # what a killed compaction left, if anything
        say(f"litmus run: study {spec.name!r} -> {store.root}: every trial is in the store, nothing to run")
        planned = load_plan(store.root, spec.name)[0]["planned"]
        for stage in ("reference", "tune"):
            n = sum(planned.get(stage, {}).values())
            if n:
                say(f"[{stage}] {n}/{n} trials already in the store: skipped")
        say(f"[final] {len(done)}/{len(done)} trials already in the store: skipped")
        driver.remove_experiments(spec, store, ray_storage)
        return StudyResult(store, _counts(store, spec, done), time.time() - t0)
    save_plan(spec, store.root, reference_jobs(spec), None)
    held: list[str] = []  # what the source says before Ray starts (stages already in the store), shown after
    progress = Progress("", 0, 1, held.append)
    source = StudySource(spec, store, progress, retry_failed)
    if not source.prime():  # a finished study: the store answers, no Ray to start (a rerun takes seconds)
        say(f"litmus run: study {spec.name!r} -> {store.root}: every trial is in the store, nothing to run")
        for line in held:
            say(line)
        driver.remove_experiments(spec, store, ray_storage)  # a killed run's checkpoints, if it had finished all
        return StudyResult(store, _counts(store, spec, [j.trial_id for j in source.final]), time.time() - t0)
    resources = driver.connect(spec, address, num_cpus)
    lock.update(ray_dir=ray_local.session_dir())  # lets the next run end this run's Ray if this driver is killed
    try:
        check_nodes(spec)  # every node imports the plugins before the first trial
        slots = driver.concurrency(spec, resources)
        say(f"litmus run: study {spec.name!r} -> {store.root} ({slots} concurrent trials on "
            f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)")
        for line in held:
            say(line)
        progress.attach(say, slots, stream=sys.stderr if live else None)
        try:
            driver.run_jobs(spec, store, source, progress, ray_storage)
        finally:
            progress.close()
        if source.stage != "final":
            raise KeyboardInterrupt  # Tune stopped before the final stage (SIGINT): the study is incomplete
        jobs = source.final
        return StudyResult(store, _counts(store, spec, [j.trial_id for j in jobs]), time.time() - t0)
    finally:
        if not keep_ray:
            driver.shutdown()
