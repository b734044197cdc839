"""Progress of a running study: counts and ETA per stage.

On a terminal the status is one line rewritten in place (stage, done, running,
failed, diverged, ETA), refreshed every second, with events (a stage skipped,
a trial retried or resumed) printed above it; when the output is piped, each
finished trial prints one line, as a log should.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TextIO

STAGES = ("reference", "tune", "final")


class Progress:
    """Counts of one stage at a time, shown through ``say`` (lines) or live on ``stream`` (a TTY)."""

    def __init__(self, stage: str, total: int, slots: int, say: Callable[[str], None],
                 stream: TextIO | None = None, refresh_s: float = 1.0) -> None:
        self.stage, self.total, self.slots, self.say = stage, total, slots, say
        self.done = self.failed = self.diverged = self.skipped = 0
        self.running: set[str] = set()
        self.started = time.time()
        self._stream = stream
        self._live = stream is not None and stream.isatty()
        self._lock = threading.Lock()
        self._shown = ""
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._refresh_s = refresh_s

    def __getstate__(self) -> dict:
        """Tune pickles the searcher that holds this object: keep the counts, drop the terminal and threads."""
        state = dict(self.__dict__)
        for key in ("_lock", "_ticker", "_stop", "_stream"):
            state.pop(key, None)
        state["_live"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock, self._ticker, self._stop, self._stream = threading.Lock(), None, threading.Event(), None

    @property
    def live(self) -> bool:
        """True when the status line is redrawn in place (a terminal)."""
        return self._live

    def attach(self, say: Callable[[str], None], slots: int, stream: TextIO | None = None) -> None:
        """Show from now on through ``say`` (and live on ``stream`` if a terminal), with ``slots`` concurrent
        trials: a study counts what is left before it starts Ray (study/run.py), then attaches. The stage's
        clock restarts if no trial has finished yet (starting Ray is not the trials' time, for the ETA)."""
        with self._lock:
            self.say, self.slots, self._stream = say, slots, stream
            self._live = stream is not None and stream.isatty()
            if not (self.done or self.failed or self.diverged):
                self.started = time.time()
        self._redraw()
        self._start_ticker()

    # --- counting ---------------------------------------------------------
    def reset(self, stage: str, total: int, skipped: int) -> None:
        """Start counting a new stage (``skipped``: trials already finished in the store)."""
        with self._lock:
            self.stage, self.total, self.skipped = stage, total, skipped
            self.done = self.failed = self.diverged = 0
            self.started = time.time()
        if skipped:
            self.event(f"[{stage}] {skipped}/{total} trials already in the store: skipped")
        self._redraw()
        self._start_ticker()

    def trial_finished(self, status: str, what: str) -> None:
        """Count a trial's end (``completed``, ``failed`` or ``diverged``) and show it."""
        with self._lock:
            if status == "failed":
                self.failed += 1
            elif status == "diverged":
                self.diverged += 1
            else:
                self.done += 1
        if self._live:
            if status != "completed":
                self.event(f"[{self.stage}] {what}")
            self._redraw()
        else:
            self.say(self.line(what))

    # --- rendering --------------------------------------------------------
    def line(self, last: str = "") -> str:
        """The status as one line (ETA from the mean time per finished trial of this stage)."""
        finished = self.done + self.failed + self.diverged
        left = max(0, self.total - self.skipped - finished)
        elapsed = time.time() - self.started
        eta = f"ETA {elapsed / finished * left:.0f}s" if finished else "ETA ?"
        n = STAGES.index(self.stage) + 1 if self.stage in STAGES else 0
        stage = f"{self.stage} {n}/{len(STAGES)}" if n else self.stage
        return (f"[{stage} {elapsed:5.0f}s] {finished + self.skipped}/{self.total} done ({self.failed} failed, "
                f"{self.diverged} diverged), {len(self.running)} running, {eta}" + (f" | {last}" if last else ""))

    def event(self, message: str) -> None:
        """A line that stays (printed above the live status line on a terminal)."""
        if not self._live:
            self.say(message)
            return
        with self._lock:
            self._stream.write("\r\x1b[2K" + message + "\n" + self._shown)
            self._stream.flush()

    def _redraw(self) -> None:
        if not self._live or not self.stage:
            return
        with self._lock:
            self._shown = self.line()
            self._stream.write("\r\x1b[2K" + self._shown)
            self._stream.flush()

    def _start_ticker(self) -> None:
        if not self._live or self._ticker is not None:
            return

        def tick() -> None:
            while not self._stop.wait(self._refresh_s):
                self._redraw()

        self._ticker = threading.Thread(target=tick, name="litmus-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop refreshing and end the live line, so later output starts on a new line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        if self._live and self._shown:
            with self._lock:
                self._stream.write("\n")
                self._stream.flush()
                self._shown = ""
