"""One trial's lifecycle in the store: running -> epoch rows -> final status.

Used by ``litmus train`` (study/single.py) and by the driver's store writer
(study/driver.py) alike. Epoch rows are buffered and appended as one part per
flush (docs/store.md): at the trial's last epoch, at its end, and every
``flush_seconds`` in between (``$LITMUS_FLUSH_SECONDS``, default 5), so a
trial of E epochs writes O(E) rows in a few files, and a tiny trial writes
one metrics part and one trial record. A flush writes the rows first, then
the "running" record, so the record never claims an epoch the store lacks.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from analysis.schema import Stage, Status

from .records import group, now, trial_record
from .store import Store

DEFAULT_FLUSH_SECONDS = 5.0


def flush_seconds() -> float:
    """Seconds between two flushes of a running trial (``$LITMUS_FLUSH_SECONDS``; 0 flushes every epoch)."""
    value = os.environ.get("LITMUS_FLUSH_SECONDS")
    return DEFAULT_FLUSH_SECONDS if value in (None, "") else max(0.0, float(value))


class TrialRecorder:
    """Writes one trial to the store; holds only the epochs not yet flushed."""

    def __init__(self, store: Store, study: str, stage: Stage | str, trial_id: str, config: dict[str, Any],
                 total_epochs: int | None = None, flush_every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.study, self.config = store, study, config
        self.grp = group(study, str(Stage(stage)), trial_id, config)
        self.total = int(total_epochs if total_epochs is not None else config.get("epochs") or 0)
        self.flush_every = flush_seconds() if flush_every is None else flush_every
        self.clock = clock
        self.started = now()
        self.rows: list[dict[str, Any]] = []
        self.weights: dict[int, dict[str, float]] = {}
        self.summary: dict[str, Any] = {}
        self.epochs = 0  # last epoch reported
        self.last_flush = clock()

    @property
    def trial_id(self) -> str:
        return self.grp["trial_id"]

    def start(self) -> None:
        """Write the "running" record before the first epoch (``litmus train`` shows it at once)."""
        self._record(Status.RUNNING)

    def epoch(self, epoch: int, rows: list[dict[str, Any]], weights: dict[str, float] | None,
              summary: dict[str, Any] | None) -> None:
        """One finished epoch. An epoch at or before the last one reported means the trial restarted:
        the buffered (and, at the next flush, the stored) rows of those epochs are replaced."""
        if epoch <= self.epochs:
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            self.weights = {e: w for e, w in self.weights.items() if e < epoch}
        self.rows += [dict(r, epoch=epoch) for r in rows]
        if weights:
            self.weights[epoch] = weights
        self.summary = summary or self.summary
        self.epochs = epoch
        if self.total and epoch >= self.total:
            self.flush(record=False)  # the final record follows
        elif self.clock() - self.last_flush >= self.flush_every:
            self.flush()

    def flush(self, record: bool = True) -> None:
        """Append the buffered epochs as one part, then (``record``) the "running" record."""
        if self.rows:
            self.store.write_metrics(self.grp, self.rows)
            self.rows = []
        if self.weights:
            self.store.write_weights(self.study, self.trial_id, self.weights)
            self.weights = {}
        if record:
            self._record(Status.RUNNING)
        self.last_flush = self.clock()

    def finish(self, status: Status | str, error: str | None = None, epochs: int | None = None,
               summary: dict[str, Any] | None = None) -> None:
        """Flush what is buffered, then write the final record (completed, failed or diverged)."""
        self.flush(record=False)
        if summary:
            self.summary = summary
        self._record(Status(status), error, self.epochs if epochs is None else epochs)

    def _record(self, status: Status, error: str | None = None, epochs: int | None = None) -> None:
        self.store.write_trial(trial_record(self.grp, self.config, status, epochs=self.epochs if epochs is None else epochs,
                                            started_at=self.started, summary=self.summary, error=error))
