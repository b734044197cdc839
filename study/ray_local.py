"""The embedded local Ray of ``litmus run``: loopback only, a private temp dir, no orphans.

* Every Ray process (GCS, raylet, object manager, workers, agents) listens on
  127.0.0.1 only. ``ray.init(_node_ip_address="127.0.0.1")`` alone is not
  enough: Ray replaces a loopback node address by the machine's external one
  unless its "local-only" mode is on (``ray_constants.ENABLE_RAY_CLUSTER``,
  env ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which it is here while Ray starts.
  No dashboard.
* Ray's temp dir (sockets, logs: Ray makes them world-readable and may log
  the environment) is ``<private 0700 dir>/r`` from :func:`tempfile.mkdtemp`,
  not the shared ``/tmp/ray``; it is removed on shutdown.
* Every process Ray starts inherits ``LITMUS_RAY_SESSION=<that dir>``. A small
  watchdog process (its own session, so a group kill of the driver spares it)
  waits for the driver to die and then kills every process carrying the
  marker; :func:`kill_session` does the same for a session recorded in a
  stale lock (study/lock.py). So a SIGKILLed driver leaves no Ray process.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "LITMUS_RAY_SESSION"
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_session: dict[str, object] = {}


def session_dir() -> str | None:
    """The private directory of the embedded Ray this process started (None if none)."""
    return _session.get("dir")  # type: ignore[return-value]


def start(num_cpus: int, runtime_env: dict | None = None) -> str:
    """Start the embedded Ray on loopback in a private temp dir; returns that dir."""
    import ray
    from ray._private import ray_constants

    private = tempfile.mkdtemp(prefix="litmus-ray-")  # mode 0700: Ray's 0777 folders inside stay private
    saved = {k: os.environ.get(k) for k in (LOCAL_ONLY_ENV, MARKER)}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV] = "0"  # Ray's children (agents, workers) resolve their address the same way
    os.environ[MARKER] = private
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray._private.services.get_node_ip_address
    watchdog = _start_watchdog(private)
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=os.path.join(private, "r"), logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True, runtime_env=runtime_env)
    except BaseException:
        kill_session(private)
        raise
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _session.update(dir=private, watchdog=watchdog)
    return private


def stop() -> None:
    """Shut the embedded Ray down and remove its private dir (the watchdog then exits by itself)."""
    import ray

    ray.shutdown()
    private = _session.pop("dir", None)
    watchdog = _session.pop("watchdog", None)
    if private:
        kill_session(str(private))  # anything Ray's shutdown left behind (its agents)
    if isinstance(watchdog, subprocess.Popen):
        try:  # it sees the dir gone within a second; on a loaded machine it may still be starting
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # it exits by itself (and is reaped by init once this process ends)


def _start_watchdog(private: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    return subprocess.Popen([sys.executable, "-m", "study.ray_local", str(os.getpid()), private],
                            env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def session_processes(private: str) -> list[int]:
    """PIDs of this user's processes that carry ``LITMUS_RAY_SESSION=<private>`` (Ray's processes of that session;
    read from /proc: Linux)."""
    want = f"{MARKER}={private}".encode()
    uid = os.getuid()
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            if want in (proc / "environ").read_bytes().split(b"\0"):
                out.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return out


def kill_session(private: str, grace: float = 3.0) -> int:
    """SIGTERM, then SIGKILL, every process of the session ``private``; remove the dir. Returns how many were found."""
    pids = session_processes(private)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
    if Path(private).name.startswith("litmus-ray-"):
        for _ in range(3):  # a process dying meanwhile may still write a log file into it
            shutil.rmtree(private, ignore_errors=True)
            if not Path(private).exists():
                break
            time.sleep(0.2)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _watch(driver: int, private: str) -> None:
    """Wait until the driver dies (then kill its Ray session) or its session dir is removed (a clean shutdown)."""
    while _alive(driver):
        if not Path(private).exists():
            return
        time.sleep(1.0)
    if Path(private).exists():
        kill_session(private)


if __name__ == "__main__":  # the watchdog: python -m study.ray_local DRIVER_PID SESSION_DIR
    _watch(int(sys.argv[1]), sys.argv[2])
