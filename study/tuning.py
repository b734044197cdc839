"""The tuning stage: one Optuna study per dataset x arch x method, all interleaved in one Ray Tune run.

The objective of an Optuna trial is the mean, over the tuning seeds, of the
validation Delta-m % against the EW reference run (EW at default
hyperparameters on the same tuning seeds, run first); with ``final.epoch:
best-val`` each seed counts its best validation epoch, with ``last`` its
last one. Every method gets the same number of Optuna trials. Optuna
studies persist in ``JournalStorage(<store>/optuna.log)`` (or the spec's RDB
URL), so a rerun resumes: finished Optuna trials count towards the budget,
Optuna trials left running by a killed driver are finished (their Ray trials
already in the store are not re-run). A trial with a failed or diverged seed
is told to Optuna as failed (the sampler sees it as the worst value, see
study/sampling.py); one stopped early by the scheduler as pruned. Candidates
come from :mod:`study.sampling` (common random numbers, then TPE), a pure
function of the study's history, so a resumed study asks what an
uninterrupted one asks. With ``tuning.replicates: K`` every method has K
independent Optuna studies (disjoint tuning seeds, independent streams).
The best hyperparameters go to ``<store>/tuning/<study>.json``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from analysis.delta_m import delta_m_values, task_weights
from analysis.schema import FINISHED, Status

from .convergence import should_stop
from .driver import NO_MORE_JOBS, Outcome
from .atomic import write_json
from .plan import Job, make_job, tuned_methods
from .sampling import FixedSampler, candidate
from .search_space import space, split_params
from .spec import Spec, base_config
from .store import Store

def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and its experimental-feature warnings off for a study run (called when a
    study starts, never at import: importing litmus configures nothing)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage(spec: Spec, store: Store) -> optuna.storages.BaseStorage:
    """The Optuna storage: the spec's RDB URL, or a journal file under the store."""
    if spec.tuning.storage:
        return optuna.storages.RDBStorage(spec.tuning.storage)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(store.root / "optuna.log")))


def study_name(spec: Spec, dataset: str, arch: str, method: str, replicate: int = 0) -> str:
    """The Optuna study's name (``/r<k>`` appended with several tuning replicates)."""
    base = f"{spec.name}/{dataset}/{arch}/{method}"
    return base if spec.tuning.replicates == 1 else f"{base}/r{replicate}"


def reference_key(row: dict[str, Any]) -> str:
    """Key of a validation metric in a reference dict: ``task/metric``."""
    return f"{row['task']}/{row['metric']}"


def score(rows: list[dict[str, Any]], reference: dict[str, float], split: str = "val") -> float:
    """Validation Delta-m % of one epoch's ``rows`` against the EW reference (``task/metric`` -> value), by
    :func:`analysis.delta_m.delta_m_values`: the number the report computes (NaN if a metric is missing)."""
    keys = sorted(reference)
    found = {reference_key(r): r for r in rows if r["split"] == split and reference_key(r) in reference}
    if not keys or len(found) < len(keys):
        return math.nan
    tasks = [found[k]["task"] for k in keys]
    hib = [bool(found[k]["higher_is_better"]) for k in keys]
    return float(delta_m_values([found[k]["value"] for k in keys], [reference[k] for k in keys],
                                task_weights(tasks, hib)))


# --- scores from the store ---------------------------------------------------
def epoch_rows(store: Store, tid: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in store.trial_metrics(tid):
        out.setdefault(r["epoch"], []).append(r)
    return out


def reference_values(store: Store, ids: list[str]) -> dict[str, float]:
    """Mean over the reference trials of their last epoch's validation metrics (``task/metric`` -> value)."""
    sums: dict[str, list[float]] = {}
    for tid in ids:
        per_epoch = epoch_rows(store, tid)
        if not per_epoch:
            continue
        for r in per_epoch[max(per_epoch)]:
            if r["split"] == "val" and r["metric"] != "loss":
                sums.setdefault(reference_key(r), []).append(r["value"])
    return {k: sum(v) / len(v) for k, v in sums.items()}


def stored_outcome(store: Store, tid: str, status: str, reference: dict[str, float], epochs: int,
                   patience: int | None = None) -> Outcome:
    """The outcome of a trial finished in the store (pruned: cut short by the scheduler, not by early stopping)."""
    if status != Status.COMPLETED:
        return Outcome(status)
    per_epoch = epoch_rows(store, tid)
    scores = [score(per_epoch[e], reference) for e in sorted(per_epoch)]
    finite = [s for s in scores if math.isfinite(s)]
    return Outcome(Status.COMPLETED, len(scores), scores[-1] if scores else math.nan,
                   max(finite) if finite else math.nan, pruned=len(scores) < epochs and not should_stop(scores, patience))


def stored_scores(store: Store, tid: str, reference: dict[str, float], before: int) -> list[float]:
    """Validation Delta-m of the trial's stored epochs ``1 .. before-1``."""
    per_epoch = epoch_rows(store, tid)
    return [score(per_epoch.get(e, []), reference) for e in range(1, before)]


# --- the job source -----------------------------------------------------------
class TuningSource:
    """Feeds Ray the seeds of Optuna trials, round-robin over the studies; tells Optuna when a trial's seeds are done."""

    def __init__(self, spec: Spec, store: Store, references: dict[tuple[str, str], dict[str, float]],
                 statuses: dict[str, str], retry_failed: bool = False) -> None:
        self.spec, self.store, self.refs = spec, store, references
        self.statuses, self.retry_failed = statuses, retry_failed
        self.storage = storage(spec, store)
        self.queue: deque[Job] = deque()
        self.studies: list[dict[str, Any]] = []
        self.waiting: dict[str, list[tuple[dict[str, Any], int]]] = {}  # job id -> optuna trials waiting on it
        self.outcomes: dict[tuple[int, int], dict[str, Outcome | None]] = {}
        tuned = tuned_methods(spec)
        index = 0
        for ds in spec.datasets:
            for arch in spec.archs:
                for m in spec.methods:
                    if m.name not in tuned:
                        continue
                    for rep in range(spec.tuning.replicates):
                        name = study_name(spec, ds.name, arch, m.name, rep)
                        st = optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                                 sampler=FixedSampler(), load_if_exists=True)
                        trials = st.get_trials(deepcopy=False)
                        entry = {"index": index, "study": st, "ds": ds, "arch": arch, "m": m, "replicate": rep,
                                 "space": space(spec, m), "asked": len(trials), "open": set()}
                        self.studies.append(entry)
                        for t in trials:  # resume Optuna trials a killed driver left running
                            if t.state == TrialState.RUNNING:
                                self._expand(entry, t.number, self._complete_params(entry, t, trials))
                        index += 1
        self.turn = 0

    def _candidate(self, entry: dict[str, Any], number: int, history: list[Any]) -> dict[str, Any]:
        tun = self.spec.tuning
        return candidate(entry["space"], tun.shared, sampler=tun.sampler, sampler_seed=tun.sampler_seed,
                         startup=tun.startup, study=entry["study"].study_name, dataset=entry["ds"].name,
                         replicate=entry["replicate"], number=number, history=history[:number])

    def _complete_params(self, entry: dict[str, Any], trial: Any, trials: list[Any]) -> dict[str, Any]:
        """A running trial's parameters; those a killed driver had not yet recorded are recomputed (they are
        a function of the trial's number and the finished trials before it) and recorded now."""
        if set(trial.params) == set(entry["space"]):
            return dict(trial.params)
        params = self._candidate(entry, trial.number, trials)
        for k, dist in entry["space"].items():
            if k not in trial.params:
                self.storage.set_trial_param(trial._trial_id, k, dist.to_internal_repr(params[k]), dist)
        return params

    def _jobs(self, entry: dict[str, Any], params: dict[str, Any]) -> list[Job]:
        method_params, shared = split_params(params)
        m, rep = entry["m"], entry["replicate"]
        return [make_job(self.spec, "tune", base_config(self.spec, entry["ds"], entry["arch"], m, m.distributions[0],
                                                        seed, method_params, shared), replicate=rep)
                for seed in self.spec.tuning.replicate_seeds(rep)]

    def _expand(self, entry: dict[str, Any], number: int, params: dict[str, Any]) -> None:
        key = (entry["index"], number)
        entry["open"].add(number)
        ref = self.refs[(entry["ds"].name, entry["arch"])]
        jobs = [replace(j, reference=ref) for j in self._jobs(entry, params)]  # the reference travels in the Job
        self.outcomes[key] = {j.trial_id: None for j in jobs}
        for j in jobs:
            status = self.statuses.get(j.trial_id)
            if status == Status.COMPLETED or (status in FINISHED and not self.retry_failed):
                self.outcomes[key][j.trial_id] = stored_outcome(self.store, j.trial_id, status, ref, j.config["epochs"],
                                                                j.patience)
            else:
                first = j.trial_id not in self.waiting
                self.waiting.setdefault(j.trial_id, []).append((entry, number))
                if first:
                    self.queue.append(j)
        self._maybe_tell(entry, number)

    def _ask(self) -> str:
        """Ask the next study that can ask (round-robin): "asked", "wait" (a model-based trial waits until
        the trials before it are told), or "done" (every budget is spent)."""
        n = len(self.studies)
        waiting = False
        for k in range(n):
            entry = self.studies[(self.turn + k) % n]
            number = entry["asked"]
            if number >= self.spec.tuning.trials:
                continue
            if number >= self.spec.tuning.startup and entry["open"]:
                waiting = True
                continue
            self.turn = (self.turn + k + 1) % n
            st: optuna.Study = entry["study"]
            history = st.get_trials(deepcopy=False) if number >= self.spec.tuning.startup else []
            params = self._candidate(entry, number, history)
            st.sampler.params = params
            trial = st.ask(entry["space"])
            if trial.number != number:
                raise RuntimeError(f"Optuna study {st.study_name} gave trial {trial.number}, expected {number}: "
                                   "was it changed by another process?")
            entry["asked"] += 1
            self._expand(entry, number, dict(trial.params))
            return "asked"
        return "wait" if waiting else "done"

    def next(self) -> Job | None | str:
        while not self.queue:
            state = self._ask()
            if state == "done":
                return NO_MORE_JOBS
            if state == "wait":
                return None
        return self.queue.popleft()

    def done(self, job: Job, outcome: Outcome) -> None:
        if outcome.status == Status.COMPLETED:
            # scores from every stored epoch: a trial resumed from a checkpoint reported only its later epochs
            ref = self.refs[(job.config["dataset"], job.config["arch"])]
            outcome = stored_outcome(self.store, job.trial_id, Status.COMPLETED, ref, job.config["epochs"], job.patience)
        for entry, number in self.waiting.pop(job.trial_id, []):
            self.outcomes[(entry["index"], number)][job.trial_id] = outcome
            self._maybe_tell(entry, number)

    def _maybe_tell(self, entry: dict[str, Any], number: int) -> None:
        key = (entry["index"], number)
        outs = self.outcomes.get(key)
        if outs is None or any(o is None for o in outs.values()):
            return
        del self.outcomes[key]
        entry["open"].discard(number)
        st: optuna.Study = entry["study"]
        values = list(outs.values())
        if any(o.status != Status.COMPLETED for o in values):
            st.tell(number, state=TrialState.FAIL)
        elif any(o.pruned for o in values):
            st.tell(number, state=TrialState.PRUNED)
        else:
            pick = "best_score" if self.spec.epoch == "best-val" else "last_score"
            scores = [getattr(o, pick) for o in values]
            if all(math.isfinite(s) for s in scores):
                st.tell(number, sum(scores) / len(scores))
            else:
                st.tell(number, state=TrialState.FAIL)


# --- results --------------------------------------------------------------------
def _best(st: optuna.Study) -> dict[str, Any]:
    trials = st.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    entry: dict[str, Any] = {"trials": len(trials), "complete": len(complete),
                             "pruned": sum(t.state == TrialState.PRUNED for t in trials),
                             "failed": sum(t.state == TrialState.FAIL for t in trials),
                             "optuna_study": st.study_name}
    if complete:
        best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earliest trial
        entry.update(params=dict(best.params), value=best.value, number=best.number)
    else:
        entry.update(params={}, value=None, note="no completed trial: defaults are used")
    return entry


def best_params(spec: Spec, store: Store) -> dict[str, Any]:
    """dataset -> arch -> method -> {params, value, trials, ...} (replicate 0's; with ``tuning.replicates`` > 1
    also ``replicates``: one such entry per replicate); written to ``<store>/tuning/<study>.json``."""
    stor = storage(spec, store)
    out: dict[str, Any] = {}
    for ds in spec.datasets:
        for arch in spec.archs:
            for name in tuned_methods(spec):
                reps = [_best(optuna.load_study(study_name=study_name(spec, ds.name, arch, name, r), storage=stor))
                        for r in range(spec.tuning.replicates)]
                entry = dict(reps[0])
                if spec.tuning.replicates > 1:
                    entry["replicates"] = reps
                out.setdefault(ds.name, {}).setdefault(arch, {})[name] = entry
    write_json(tuning_path(store, spec.name), out)
    return out


def tuning_path(store: Store, name: str) -> Path:
    return store.root / "tuning" / f"{name}.json"


def load_best(store: Store, name: str) -> dict[str, Any]:
    path = tuning_path(store, name)
    return json.loads(path.read_text()) if path.exists() else {}
