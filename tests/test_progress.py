"""Progress of `litmus run`: a live status line on a terminal, a line per trial when piped."""

from __future__ import annotations

import io

from study.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_output_logs_one_line_per_trial():
    lines: list[str] = []
    p = Progress("", 0, 2, lines.append, stream=io.StringIO())  # not a terminal
    assert not p.live
    p.reset("final", 4, 1)
    p.running.update({"a", "b"})
    p.trial_finished("completed", "ew on d seed 0: completed")
    p.trial_finished("diverged", "rlw on d seed 0: diverged")
    p.close()
    assert lines[0] == "[final] 1/4 trials already in the store: skipped"
    assert len(lines) == 3
    assert lines[1].startswith("[final 3/3 ") and "2/4 done (0 failed, 0 diverged), 2 running" in lines[1]
    assert lines[1].endswith("| ew on d seed 0: completed")
    assert "3/4 done (0 failed, 1 diverged)" in lines[2]


def test_terminal_redraws_one_line_and_keeps_events():
    said: list[str] = []
    tty = FakeTTY()
    p = Progress("", 0, 2, said.append, stream=tty, refresh_s=60)
    assert p.live
    p.reset("tune", 3, 0)
    p.trial_finished("completed", "ew on d seed 1000: completed")
    p.trial_finished("failed", "uw on d seed 1000: failed")
    p.event("[tune] trial t1 failed, retrying (1/2)")
    p.close()
    out = tty.getvalue()
    assert said == []  # nothing goes through the line logger on a terminal
    # completed trials only update the status line; failures and events stay as lines of their own
    assert "ew on d seed 1000" not in out
    kept = [l.split("\r\x1b[2K")[-1] for l in out.split("\n") if l]
    assert "[tune] uw on d seed 1000: failed" in kept
    assert "[tune] trial t1 failed, retrying (1/2)" in kept
    assert kept[-1].startswith("[tune 2/3 ") and "2/3 done (1 failed, 0 diverged)" in kept[-1]
    assert out.endswith("\n")  # the live line is ended before anything else prints


def test_progress_pickles_without_its_terminal():
    # Ray Tune pickles the searcher, which holds the progress: a live one must survive it
    import pickle

    p = Progress("", 0, 2, print, stream=FakeTTY(), refresh_s=60)
    p.reset("final", 3, 1)
    q = pickle.loads(pickle.dumps(p))
    p.close()
    assert (q.stage, q.total, q.skipped, q.live) == ("final", 3, 1, False)


def test_counts_taken_before_ray_starts_are_shown_once_attached():
    # study/run.py counts what the store holds before it starts Ray, then attaches the outputs
    held: list[str] = []
    p = Progress("", 0, 1, held.append)
    p.reset("final", 4, 3)
    p.started -= 100  # as if Ray took long to start: that is not the trials' time
    assert held == ["[final] 3/4 trials already in the store: skipped"]
    tty = FakeTTY()
    p.attach(print, 2, stream=tty)
    assert p.live and p.slots == 2 and p.line().startswith("[final 3/3     0s] 3/4 done")
    p.trial_finished("completed", "ew on d seed 3: completed")
    p.close()
    assert "4/4 done" in tty.getvalue() and len(held) == 1
