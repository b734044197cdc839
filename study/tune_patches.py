"""Five corrections to Ray Tune's defaults, applied by the driver before ``Tuner.fit()``.

**A lost Ray worker costs one trial retry, never the study** (:func:`survive_lost_workers`).
Ray Tune (``ray.air.execution._internal.actor_manager``) treats an actor
task's failure as an actor failure only for ``RayActorError``; any other
Ray system error, e.g. ``OutOfMemoryError`` when Ray's memory monitor kills
a worker while its actor starts (``ImplicitFunc.__init__``) or is reset for
reuse, or ``WorkerCrashedError``/``NodeDiedError``/``ObjectLostError``,
makes it raise ``RuntimeError("Caught unexpected exception")`` out of
``Tuner.fit()``, ending the whole study. :func:`install` makes Tune see all
of them as what they are, the loss of that trial's actor: Tune then records
the trial's failure and retries it (``FailureConfig(max_failures=retries)``)
from its last checkpoint, and the study carries on. Errors raised by the
trainable itself (``RayTaskError``) are unchanged.

**One lost actor is one failure** (:func:`ignore_stale_actor_failures`). When a node goes, Tune
can hear of its actor's death twice, 6 ms apart (seen in a fresh-clone CI run of
``test_multi_node_study_survives_a_worker_node_removed_mid_run``): the first report requeues the
trial for a retry (status ``PENDING``, no actor), and the second reaches
``TuneController._process_trial_failure`` with the trial ``PENDING``, which Tune treats as final: the
trial is errored although its retries were not used up. A ``RayActorError`` for a trial that is
``PENDING`` and holds no actor is stale (the failure of a trial's own starting actor arrives with
the trial set back to ``RUNNING`` by ``TuneController._actor_failed``), so it is dropped; the trial
runs again as the first report asked.

**A starting actor is not thrown away** (:func:`keep_starting_actors`). With ``reuse_actors``, Tune
gives an actor that a finished trial leaves in its cache to a pending trial, and if that trial already
had an actor of its own starting, it removes that one. A new actor takes seconds to start (a Ray
worker with the trial's runtime env, then ``import torch``), often longer than the gap until the next
trial finishes, so the second actor never comes up and a study on 2 CPUs runs one trial at a time
(measured: every trial of the quickstart's tuning and final stages ran alone). The patch lets a trial
wait for its own starting actor (up to a grace period) and leaves the cached actor to the next trial.

**No secret in Ray's runtime environments** (:func:`keep_secrets_out_of_runtime_env`). Tune copies
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and the like from the driver's environment into
each trainable's ``runtime_env``, which Ray keeps in its GCS and writes into its logs
(``runtime_env_agent.log``, world-readable under the shared ``/tmp/ray``). litmus's trials do not
need them passed that way: the embedded Ray's workers inherit the driver's environment, and on a
cluster each node has its own credentials (docs/cluster.md).

**A finished trial costs Tune nothing more** (:func:`forget_finished_trials`). Ray Tune's controller
keeps every trial of an experiment until ``fit()`` returns: the ``Trial`` object with its last result,
its JSON state (``_trial_metadata``, rewritten into the experiment-state file at every snapshot), and
its place in the trial list that the FIFO/ASHA scheduler scans at every decision
(``FIFOScheduler.choose_trial_to_run``). A study of N trials thus costs O(N) per decision and per
snapshot (quadratic in all) and ~90 KB of driver memory per finished trial. litmus never resumes from
Tune's experiment state (the store is the source of truth, docs/design.md), so at the end of each
controller step the trials that are over (terminated or errored for good, no actor, no pending
decision) are dropped from the controller's bookkeeping: what Tune holds and saves is bounded by the
trials in flight.
"""

from __future__ import annotations

import re
import time
import weakref
from typing import Any, Callable

_MARK = "_litmus_patched"


def _wrap_once(cls: Any, name: str, wrap: Callable[[Callable], Callable]) -> None:
    """Replace the method ``cls.name`` by ``wrap(original)``, unless litmus already did (idempotent)."""
    original = getattr(cls, name)
    if getattr(original, _MARK, False):
        return
    patched = wrap(original)
    setattr(patched, _MARK, True)
    setattr(cls, name, patched)


def as_actor_error(exception: BaseException) -> BaseException:
    """``exception`` unchanged if Tune already handles it, else a ``RayActorError`` carrying its text."""
    from ray.exceptions import RayActorError, RayError, RayTaskError

    if isinstance(exception, (RayActorError, RayTaskError)) or not isinstance(exception, RayError):
        return exception
    err = RayActorError(error_msg=f"the trial's Ray worker was lost ({type(exception).__name__}): {exception}")
    err.__cause__ = exception
    return err


def ignore_stale_actor_failures() -> None:
    """Drop a second report of an actor's death for a trial already requeued (idempotent; see the module doc)."""
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    def wrap(original: Callable) -> Callable:
        def _trial_task_failure(self: Any, trial: Any, exception: Exception) -> None:
            if (isinstance(exception, RayActorError) and trial.status == Trial.PENDING
                    and trial not in self._trial_to_actor):
                return  # stale: this trial's failure was already handled and it waits for its retry
            return original(self, trial, exception)
        return _trial_task_failure

    _wrap_once(TuneController, "_trial_task_failure", wrap)


def survive_lost_workers() -> None:
    """Route Ray system errors of actor tasks to Tune's actor-failure path (idempotent)."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    def wrap(original: Callable) -> Callable:
        def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
            return original(self, tracked_actor_task, as_actor_error(exception))
        return _actor_task_failed

    _wrap_once(RayActorManager, "_actor_task_failed", wrap)


def _forget(controller: Any) -> int:
    """Drop the controller's finished trials (see the module docstring); returns how many."""
    done = [t for t in (*controller._stopped_trials, *controller._failed_trials)
            if t not in controller._live_trials and t not in controller._trial_to_actor
            and t not in controller._staged_trials and t.trial_id not in controller._cached_trial_decisions]
    if not done:
        return 0
    gone = set(done)
    controller._trials[:] = [t for t in controller._trials if t not in gone]  # in place: callbacks hold the list
    since_sync = getattr(controller._checkpoint_manager, "_trial_num_checkpoints_since_last_sync", {})
    for t in done:
        controller._stopped_trials.discard(t)
        controller._failed_trials.discard(t)
        controller._trials_to_cache.discard(t)
        controller._trial_metadata.pop(t.trial_id, None)
        since_sync.pop(t, None)
    return len(done)


def forget_finished_trials() -> None:
    """Make Tune's controller drop finished trials at the end of every step (idempotent)."""
    from ray.tune.execution.tune_controller import TuneController

    def wrap(original: Callable) -> Callable:
        def on_step_end(self: Any) -> None:
            original(self)
            _forget(self)
        return on_step_end

    _wrap_once(TuneController, "on_step_end", wrap)


_OWN_ACTOR_SINCE: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def keep_starting_actors(grace_s: float = 60.0) -> None:
    """Do not take a cached actor for a trial whose own actor is starting (idempotent; see the module doc)."""
    from ray.tune.execution.tune_controller import TuneController

    def wrap(original: Callable) -> Callable:
        def _maybe_reuse_cached_actor(self: Any, trial: Any) -> bool:
            own = self._trial_to_actor.get(trial)
            if own is not None and own not in self._started_actors:
                since = _OWN_ACTOR_SINCE.setdefault(own, time.monotonic())
                if time.monotonic() - since < grace_s:
                    return False  # its own actor is on its way; the cached one serves the next trial
            return original(self, trial)
        return _maybe_reuse_cached_actor

    _wrap_once(TuneController, "_maybe_reuse_cached_actor", wrap)


SECRET = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(^|_)KEY(_|$)|ACCESS_KEY", re.IGNORECASE)


def keep_secrets_out_of_runtime_env() -> None:
    """Stop Tune from copying secret-looking environment variables into its trainables' runtime env."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = {v for v in class_cache.ENV_VARS_TO_PROPAGATE if not SECRET.search(v)}
