"""The fixed-list stages: the EW reference (before tuning) and the final stage (after it)."""

from __future__ import annotations

from collections import deque

from analysis.schema import FINISHED, Status

from .driver import NO_MORE_JOBS, Outcome
from .plan import Job


def pending(jobs: list[Job], statuses: dict[str, str], retry_failed: bool = False) -> list[Job]:
    """Jobs not finished in the store (failed/diverged ones count as finished unless ``retry_failed``)."""
    seen: set[str] = set()
    out = []
    for j in jobs:
        st = statuses.get(j.trial_id)
        if j.trial_id in seen or st == Status.COMPLETED or (st in FINISHED and not retry_failed):
            continue
        seen.add(j.trial_id)
        out.append(j)
    return out


class ListSource:
    """Yields a fixed list of jobs, then NO_MORE_JOBS (outcomes are in the store: nothing is kept per trial)."""

    def __init__(self, jobs: list[Job]) -> None:
        self.queue = deque(jobs)

    def next(self) -> Job | None | str:
        return self.queue.popleft() if self.queue else NO_MORE_JOBS

    def done(self, job: Job, outcome: Outcome) -> None:
        pass
