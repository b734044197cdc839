"""One driver per store: ``<store>/.litmus-run.lock``.

The driver holds an exclusive ``flock`` on the file for as long as it runs
(the kernel drops it when the process dies, however it dies) and writes its
host, PID, start time and the private dir of its embedded Ray into it. A
second ``litmus run`` on the store fails to take the lock and refuses in one
line naming the holder. ``litmus compact`` takes the same lock (it rewrites
the files a driver writes), so neither runs while the other holds the store.
A lock file left by a dead driver (free to take) is stale: it is taken over
with a message, and the Ray processes that driver started, if any survived,
are ended (study/ray_local.py). ``status`` and ``report`` never take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from litmus.errors import LockError  # noqa: F401 - part of this module's interface

LOCK_NAME = ".litmus-run.lock"


class StoreLock:
    """The exclusive run lock of a store (use as a context manager or call :meth:`release`)."""

    def __init__(self, root: Path, say: Callable[[str], None] = print, command: str = "litmus run") -> None:
        self.path = Path(root) / LOCK_NAME
        self.say, self.command = say, command
        self.fd: int | None = None
        self.info: dict[str, Any] = {}

    def acquire(self) -> "StoreLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (f"PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                   if holder else "another process")
            command = holder.get("command") or "litmus run"
            raise LockError(f"store {self.path.parent} is in use by another `{command}` ({who}); "
                            "wait for it to finish (`litmus status` and `litmus report` work meanwhile)") from None
        previous = _read(fd)
        if previous:
            self.say(f"litmus: taking over the stale lock of a dead run (PID {previous.get('pid')} on "
                     f"{previous.get('host')}, started {previous.get('started')})")
            ray_dir = previous.get("ray_dir")
            if ray_dir and previous.get("host") == socket.gethostname():
                from .ray_local import kill_session

                n = kill_session(str(ray_dir))
                if n:
                    self.say(f"litmus: ended {n} leftover Ray process(es) of that run")
        self.fd = fd
        self.update(host=socket.gethostname(), pid=os.getpid(), command=self.command,
                    started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), ray_dir=None)
        return self

    def update(self, **info: Any) -> None:
        """Record more about this run (e.g. its Ray session dir) in the lock file."""
        assert self.fd is not None
        self.info.update(info)
        data = json.dumps(self.info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Empty the file (so the next run sees no stale holder) and drop the lock."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0)
        data = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
