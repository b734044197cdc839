"""The Ray side of a study: connect, run a stream of jobs as Ray Tune trials, write the store.

One :func:`run_jobs` call is one ``Tuner.fit()`` over the trainable
``trainables.tune.train_trial``. Trials come from a :class:`JobSource`
through a small Tune ``Searcher`` (so tuning can ask Optuna lazily, with all
methods' trials interleaved), and a ``tune.Callback`` in the driver, the
store's single writer, writes every reported epoch and the final status.
Tune's own experiment state is not used to resume: the store is the source
of truth (docs/design.md), so every call is a fresh experiment.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from analysis.schema import Stage, Status
from trainables import heap

from litmus.errors import ClusterError, RayRunError, NoSpaceError  # noqa: F401 - part of this module's interface

from . import ray_local, tune_patches
from .plan import Job
from .progress import Progress
from .recorder import TrialRecorder
from .spec import Spec
from .store import Store

#: Ray's own console output, quieted for a study (users see litmus's progress lines); set by
#: :func:`quiet_ray` when a study connects, never at import (a user's own settings win)
QUIET_RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_TRAIN_V2_ENABLED": "0",
}


def quiet_ray() -> None:
    """Set :data:`QUIET_RAY_ENV` where the user has not (before Ray starts or Tune runs)."""
    for key, value in QUIET_RAY_ENV.items():
        os.environ.setdefault(key, value)


#: the driver gives glibc's free pages back to the kernel after every this many finished trials
#: (trainables/heap.py: ~12 KB per finished trial that only a trim returns; a trim costs milliseconds)
RELEASE_HEAP_EVERY = 500

#: what a job source's ``next`` returns when it will yield no job again (Ray's ``Searcher.FINISHED``)
NO_MORE_JOBS = "NO_MORE_JOBS"


def no_space(err: BaseException) -> NoSpaceError | None:
    """A :class:`NoSpaceError` naming the path if ENOSPC is anywhere in ``err``'s chain of causes."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return NoSpaceError(f"no space left on {e.filename or 'the device'}")
        e = e.__cause__ or e.__context__
    return None


def check_local_gpus(spec: Spec, address: str | None) -> None:
    """An embedded Ray on a machine without CUDA cannot give GPUs: refuse before anything is written."""
    if spec.resources.get("gpu", 0) > 0 and not (address or os.environ.get("RAY_ADDRESS")):
        import torch

        if torch.cuda.device_count() == 0:
            raise ClusterError(f"resources.gpu: the spec asks for {spec.resources['gpu']:g} GPU per trial, but this "
                               "machine has no CUDA GPU (use --address to run on a cluster with GPUs)")


@dataclass
class Outcome:
    """How a job ended, as the sources (tuning) need it."""

    status: Status  # completed | failed | diverged
    epochs: int = 0
    last_score: float = float("nan")
    best_score: float = float("nan")
    pruned: bool = False
    error: str | None = None


class JobSource(Protocol):
    def next(self) -> Job | None | str: ...  # a job, None (nothing yet), or NO_MORE_JOBS

    def done(self, job: Job, outcome: Outcome) -> None: ...


# --- Ray connection --------------------------------------------------------
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"cluster address {address!r} must be HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


def connect(spec: Spec, address: str | None = None, num_cpus: int | None = None) -> dict[str, float]:
    """Start an embedded local Ray (loopback only, no dashboard, private temp dir) or connect to ``address``.

    Returns the cluster's resources; raises :class:`ClusterError` before any trial if the cluster
    is unreachable or lacks the GPUs the spec asks for.
    """
    quiet_ray()
    import ray

    from .workers import runtime_env

    env = runtime_env(spec)  # plugin files and local packages travel with the job
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        pass
    elif address:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                     runtime_env=env)
        except (ConnectionError, RuntimeError, TimeoutError) as err:
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {str(err).splitlines()[0]}") from None
    else:  # loopback only, private temp dir, no orphans: study/ray_local.py
        ray_local.start(num_cpus or os.cpu_count() or 1, runtime_env=env)
    res = ray.cluster_resources()
    if spec.resources.get("gpu", 0) > 0 and res.get("GPU", 0) <= 0:
        raise ClusterError(f"resources.gpu: the spec asks for {spec.resources['gpu']} GPU per trial, "
                           "but the Ray cluster has no GPU")
    if spec.resources["cpu"] > res.get("CPU", 0):
        raise ClusterError(f"resources.cpu: the spec asks for {spec.resources['cpu']:g} CPUs per trial, "
                           f"but the Ray cluster has {res.get('CPU', 0):g}")
    return res


def shutdown() -> None:
    import ray

    if ray_local.session_dir():
        ray_local.stop()
    else:
        ray.shutdown()


def concurrency(spec: Spec, resources: dict[str, float]) -> int:
    """Concurrent trials: the spec's value, or as many as the cluster's CPUs (and GPUs) hold."""
    if spec.concurrency:
        return spec.concurrency
    n = int(resources.get("CPU", 1) // spec.resources["cpu"])
    if spec.resources.get("gpu", 0) > 0:
        n = min(n, int(resources.get("GPU", 0) // spec.resources["gpu"]))
    return max(1, n)


# --- the searcher that feeds Tune from a job source -------------------------
def experiment_dir_pattern(study: str) -> re.Pattern[str]:
    """Names of the Ray Tune experiment folders that :func:`run_jobs` creates for ``study`` in its Ray storage."""
    return re.compile(rf"{re.escape(study)}-\d{{8}}-\d{{6}}-\d+")


def latest_checkpoint(root: Path | None, trial_id: str, max_epoch: int, study: str) -> Path | None:
    """The newest checkpoint of ``trial_id`` left under a local Ray storage ``root`` by an interrupted run,
    among those at an epoch the store already holds (``<= max_epoch``): resuming from a later one would
    lose the epochs in between, whose rows the killed driver never wrote.

    Only this study's own experiment folders are searched (:func:`experiment_dir_pattern`), and no path that
    leaves ``root`` through a symbolic link; the file is loaded with ``weights_only=True`` (trainables.state)."""
    if root is None or max_epoch < 1 or not root.is_dir():
        return None
    real_root = root.resolve()
    pattern = experiment_dir_pattern(study)
    best: tuple[int, float, Path] | None = None
    for ckpt in root.glob(f"*/{trial_id}/checkpoint_*/trainer.pt"):
        if not pattern.fullmatch(ckpt.parent.parent.parent.name) or not ckpt.resolve().is_relative_to(real_root) \
                or any(p.is_symlink() for p in (ckpt, ckpt.parent, ckpt.parent.parent, ckpt.parent.parent.parent)):
            continue
        try:
            epoch = int(json.loads((ckpt.parent / "epoch.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an incomplete checkpoint directory: not usable
        key = (epoch, ckpt.stat().st_mtime, ckpt)
        if epoch <= max_epoch and (best is None or key[:2] > best[:2]):
            best = key
    return best[2] if best else None


def _searcher(source: JobSource, checkpoint_every: int, checkpoints: Path | None = None,
              store: Store | None = None, study: str = "", plugins: list[str] | None = None,
              recorders: dict[str, TrialRecorder] | None = None):
    from ray.tune.search import Searcher

    class SourceSearcher(Searcher):
        """Asks the job source for the next trial; tells it how each one ended."""

        def __init__(self) -> None:
            super().__init__()  # scores are computed in the driver (study/tuning.py), not reported by trials
            self.jobs: dict[str, Job] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            job = source.next()
            if job is None or job == NO_MORE_JOBS:
                return Searcher.FINISHED if job == NO_MORE_JOBS else None
            self.jobs[trial_id] = job
            stored = store.stored_epochs(job.trial_id) if store else 0
            resume = latest_checkpoint(checkpoints, job.trial_id, stored, study)
            return {"train": job.config,
                    "litmus": {"trial_id": job.trial_id, "stage": job.stage, "label": job.label,
                               "replicate": job.replicate, "reference": job.reference,
                               "checkpoint_every": checkpoint_every,
                               "resume_from": str(resume) if resume else None, "plugins": list(plugins or []),
                               "patience": job.patience}}

        def save(self, checkpoint_path: str) -> None:  # the store, not Tune's state, is what resumes a study
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            job = self.jobs.pop(trial_id, None)
            if job is not None:
                rec = (recorders or {}).get(job.trial_id)
                if rec is not None:  # the source reads the trial's epochs from the store: none may be buffered
                    rec.flush(record=False)
                source.done(job, outcome_of(job, result, error))

    return SourceSearcher()


def outcome_of(job: Job, result: dict | None, error: bool) -> Outcome:
    r = result or {}
    epochs = int(r.get("epoch") or 0)
    if error:
        return Outcome(Status.FAILED, epochs, error="trial raised (see the store's error column)")
    if r.get("status") == Status.DIVERGED:
        return Outcome(Status.DIVERGED, epochs, error=r.get("error"))
    return Outcome(Status.COMPLETED, epochs, pruned=not r.get("done_epochs", True))


# --- the store writer -----------------------------------------------------
def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        text = Path(path).read_text(errors="replace").strip()
        if text:
            return text
    return "trial failed (Ray gave no error text)"


def _store_writer(spec: Spec, store: Store, progress: Progress, stopper: Any,
                  recorders: dict[str, TrialRecorder]):
    from ray import tune

    class StoreWriter(tune.Callback):
        """Writes each reported epoch and each trial's end to the store (the driver is the single writer)."""

        def __init__(self) -> None:
            self.recorders = recorders  # running trials only: nothing kept once finished
            self.finished = 0

        @staticmethod
        def _ids(trial: Any) -> tuple[str, str, dict[str, Any]]:
            meta = trial.config["litmus"]
            config = trial.config["train"]
            if meta.get("replicate") is not None:  # the tuning replicate travels with the config into the store
                config = {**config, "replicate": meta["replicate"]}
            return meta["trial_id"], meta["stage"], config

        def _recorder(self, trial: Any) -> TrialRecorder:
            tid, stage, config = self._ids(trial)
            if tid not in self.recorders:
                self.recorders[tid] = TrialRecorder(store, spec.name, stage, tid, config)
            return self.recorders[tid]

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            progress.running.add(self._recorder(trial).trial_id)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            rec = self._recorder(trial)
            progress.running.add(rec.trial_id)  # reused actors do not always call on_trial_start
            if result.get("status") == Status.DIVERGED:
                return
            if rec.epochs == 0 and result.get("resumed_from"):
                config = rec.config
                progress.event(f"[{progress.stage}] {config['method']} on {config['dataset']} seed {config['seed']}: "
                               f"resumed from its checkpoint at epoch {result['resumed_from']}")
            rec.epoch(int(result["epoch"]), result["rows"], result.get("weights"), result.get("summary"))

        def _finish(self, trial: Any, status: Status, error: str | None) -> None:
            rec = self.recorders.pop(self._ids(trial)[0], None) or self._recorder(trial)
            self.recorders.pop(rec.trial_id, None)
            last = trial.last_result or {}
            epochs = int(last.get("epoch") or 0) if last.get("litmus_id") == rec.trial_id else 0
            rec.finish(status, error, epochs=epochs or rec.epochs, summary=last.get("summary"))
            progress.running.discard(rec.trial_id)
            stopper.forget(rec.trial_id)
            config = rec.config
            what = f"{config['method']}{'/' + config['distribution'] if config.get('distribution') else ''} " \
                   f"on {config['dataset']} seed {config['seed']}: {status}"
            progress.trial_finished(status, what)
            self.finished += 1
            if self.finished % RELEASE_HEAP_EVERY == 0:
                heap.release_freed_heap()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            last = trial.last_result or {}
            if last.get("status") == Status.DIVERGED:
                self._finish(trial, Status.DIVERGED, last.get("error"))
            elif not last.get("done_epochs", False) and self._ids(trial)[0] not in stopper.stopped:
                self._finish(trial, Status.COMPLETED,
                             f"pruned: stopped early by the scheduler after epoch {last.get('epoch')}")
            else:
                self._finish(trial, Status.COMPLETED, None)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, Status.FAILED, _error_text(trial))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            tid, _, _ = self._ids(trial)
            progress.event(f"[{progress.stage}] trial {tid} failed, retrying ({trial.num_failures}/{spec.retries})")

    return StoreWriter()


def _silent_progress():
    """A stand-in for the progress callback Tune adds to every run that passes none.

    Ray Tune's ``TrialProgressCallback`` (added by ``_create_default_callbacks`` when no callback of
    that class is given) keys two dictionaries and a set by ``Trial`` object and never removes them:
    every finished trial stays alive in the driver, with its config, last result and result
    statistics (~130 KB each at 1 epoch, and one Ray object reference), to print progress that
    litmus never shows (``verbose=0``: the store writer prints litmus's own lines). Passing this
    subclass, which records nothing, keeps Tune from adding its own (issue 13: the driver's memory
    per finished trial)."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class SilentProgress(TrialProgressCallback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            pass

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            pass

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            pass

    return SilentProgress()


def _scheduler(spec: Spec):
    """ASHA on the validation score for tuning trials only (the reference and final trials always run to the end)."""
    sched = spec.tuning.scheduler
    if not sched:
        return None
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from .tuning import score

    def tuned(trial: Any) -> bool:
        meta = trial.config["litmus"]
        return meta["stage"] == Stage.TUNE and meta.get("label") != "reference"

    class TuningASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            if not tuned(trial):
                return TrialScheduler.CONTINUE
            result["score"] = score(result.get("rows") or [], trial.config["litmus"].get("reference") or {})
            return super().on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
            if tuned(trial):
                rows = result.get("rows") or []
                super().on_trial_complete(tune_controller, trial,
                                          {**result, "score": score(rows, trial.config["litmus"].get("reference") or {})})

    max_t = max((ds.epochs or 1) for ds in spec.datasets)
    return TuningASHA(metric="score", mode="max", time_attr="training_iteration", max_t=max(max_t, 1),
                         grace_period=int(sched.get("grace_period", 1)),
                         reduction_factor=int(sched.get("reduction_factor", 2)))


def _early_stopper(store: Store):
    """Stops trials by their dataset's ``epochs.patience`` rule on validation Delta-m (study/convergence.py)."""
    from .convergence import early_stopper
    from .tuning import score, stored_scores

    def reference(config: dict[str, Any]) -> dict[str, float]:
        ref = config["litmus"].get("reference")  # travels in the Job
        if not ref:
            train = config["train"]
            raise RuntimeError(f"no EW reference for {train['dataset']} ({train['arch']}): cannot stop early")
        return ref

    return early_stopper(lambda rows, config: score(rows, reference(config)),
                         lambda tid, config, epoch: stored_scores(store, tid, reference(config), epoch))


def run_jobs(spec: Spec, store: Store, source: JobSource, progress: Progress,
             ray_storage: str | None = None) -> None:
    """Run every job the source yields as Ray Tune trials; the store holds the results."""
    quiet_ray()
    from ray import tune

    from trainables.tune import train_trial

    from .workers import worker_modules

    # with a custom searcher Tune keeps only one trial pending by default, which serialises the study
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = os.environ.get("LITMUS_MAX_PENDING_TRIALS", str(progress.slots))
    # trials report rows, not scores: the ASHA scheduler computes its score from them (study/tuning.py)
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    storage = ray_storage or str(store.root / "ray")
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    trainable = tune.with_resources(train_trial, {"cpu": spec.resources["cpu"], "gpu": spec.resources.get("gpu", 0)})
    stopper = _early_stopper(store)
    recorders: dict[str, TrialRecorder] = {}  # litmus trial id -> its recorder, while it runs
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(source, spec.checkpoint_every, None if "://" in storage else Path(storage), store,
                                 spec.name, worker_modules(spec), recorders),
            num_samples=-1,
            max_concurrent_trials=progress.slots, reuse_actors=True, scheduler=_scheduler(spec),
            trial_dirname_creator=lambda t: t.config["litmus"]["trial_id"],
            trial_name_creator=lambda t: t.config["litmus"]["trial_id"],
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, log_to_file=False,
            failure_config=tune.FailureConfig(max_failures=spec.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # one to fall back on: see latest_checkpoint
            # the silent progress callback: Tune's own would keep every finished Trial object alive
            callbacks=[_store_writer(spec, store, progress, stopper, recorders), _silent_progress()],
            progress_reporter=None, stop=stopper,
        ),
    )
    for quiet in ("ray.tune", "ray.train", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(quiet).setLevel(logging.ERROR)
    tune_patches.survive_lost_workers()  # a worker lost in actor start/reuse (OOM kill, node loss): a retry
    tune_patches.ignore_stale_actor_failures()  # a lost actor reported twice is one failure, not the trial's end
    tune_patches.keep_secrets_out_of_runtime_env()  # no AWS_SECRET_ACCESS_KEY in Ray's GCS and logs
    tune_patches.keep_starting_actors()  # a second actor is not thrown away while it starts: trials run side by side
    tune_patches.forget_finished_trials()  # Tune's per-decision scans and snapshots: the trials in flight only
    try:
        tuner.fit()
    except Exception as err:  # noqa: BLE001 - anything else Tune could not handle: the store holds all done so far
        full = no_space(err)
        if full:
            raise full from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RayRunError(f"Ray Tune stopped ({type(err).__name__}: {first})") from err
    if getattr(source, "finished", False):
        remove_experiments(spec, store, ray_storage)


def remove_experiments(spec: Spec, store: Store, ray_storage: str | None = None) -> None:
    """The study is complete: no checkpoint is needed any more, its Ray Tune experiment folders go (an
    interrupted run keeps them, so that its unfinished trials resume from their last checkpoint)."""
    storage = ray_storage or str(store.root / "ray")
    if "://" in storage or not Path(storage).is_dir():
        return
    pattern = experiment_dir_pattern(spec.name)
    for d in Path(storage).resolve().iterdir():
        if d.is_dir() and pattern.fullmatch(d.name):
            shutil.rmtree(d, ignore_errors=True)


def format_exception() -> str:
    return traceback.format_exc()
