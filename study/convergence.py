"""Early stopping on validation Delta-m: one rule for every method (``epochs: {max: N, patience: P}``).

After each epoch the driver scores the trial's validation metrics against
the EW reference run (:func:`study.tuning.score`, the report's Delta-m).
A trial stops once its best score is ``P`` epochs old: the best epoch is
then followed by ``P`` epochs without improvement, so it is never the last
one (the sign of a training budget long enough for the comparison, as in
Prechelt, "Early Stopping - But When?", 1998). A NaN score never improves.
The EW reference trials themselves, which define the score, run ``N``
epochs. The rule is a pure function of the scores, so a resumed trial
stops where an uninterrupted one does.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def best_epoch(scores: Sequence[float]) -> int:
    """The 1-based epoch of the first best finite score (0 if none is finite)."""
    best, at = -math.inf, 0
    for e, s in enumerate(scores, 1):
        if math.isfinite(s) and s > best:
            best, at = s, e
    return at


def should_stop(scores: Sequence[float], patience: int | None) -> bool:
    """True when the scores so far (one per epoch) end ``patience`` epochs after the best one."""
    return bool(patience) and len(scores) - best_epoch(scores) >= patience


def early_stopper(score_of: Any, history: Any):
    """A Ray Tune stopper: stops a trial whose ``config.litmus.patience`` rule holds.

    ``score_of(rows, config)`` scores one epoch's rows (``config``: the trial's whole config, ``train`` and
    ``litmus``, whose ``reference`` the score is against); ``history(trial_id, config, epoch)`` gives the scores of
    the epochs before ``epoch`` already in the store (a trial resumed from a checkpoint reports only later ones).
    ``stopped`` maps the litmus trial ids it stopped to their last epoch.
    """
    from ray.tune import Stopper

    class EarlyStopper(Stopper):
        def __init__(self) -> None:
            self.scores: dict[str, list[float]] = {}
            self.stopped: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            config = result.get("config") or {}
            meta = config.get("litmus") or {}
            patience, tid = meta.get("patience"), meta.get("trial_id")
            if not patience or not tid or result.get("status") != "running":
                return False
            epoch = int(result["epoch"])
            scores = self.scores.get(tid)
            if scores is None or len(scores) != epoch - 1:
                scores = history(tid, config, epoch)
            scores = scores[:epoch - 1] + [score_of(result.get("rows") or [], config)]
            self.scores[tid] = scores
            if epoch < int(config["train"]["epochs"]) and should_stop(scores, patience):
                self.stopped[tid] = epoch
                return True
            return False

        def stop_all(self) -> bool:
            return False

        def forget(self, tid: str) -> None:
            """A finished trial's scores are no longer needed (the driver's memory stays flat)."""
            self.scores.pop(tid, None)
            self.stopped.pop(tid, None)

    return EarlyStopper()
