"""The embedded Ray listens on loopback only, keeps its files private, leaves no process behind a killed
driver; one driver per store (issue 10, items 2, 6, 7 and 10)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from study import driver, ray_local
from study.cli import main
from study.lock import LOCK_NAME, LockError, StoreLock
from study.run import run_study
from study.spec import parse
from study.store import Store

OPTS = {"n_train": 300, "n_val": 50, "n_test": 50, "width": 8}
CANARY = "litmus-h10-canary-5e1f0c"


def _spec(tmp_path: Path, name: str = "safe", **kw) -> dict:
    return {"name": name, "store": str(tmp_path / "store"),
            "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": kw.pop("epochs", 2)}],
            "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": kw.pop("seeds", 2)}, **kw}


def _proc_ip(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: little-endian 32-bit words."""
    raw = bytes.fromhex(hexaddr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)
    return addr.ipv4_mapped or addr if isinstance(addr, ipaddress.IPv6Address) else addr


def _listening(pids: list[int]) -> list[tuple[int, str, str]]:
    """(pid, process name, local address) of every listening TCP socket and bound UDP socket of ``pids``
    (read from /proc like `ss -ltnup`, independently of Ray)."""
    sockets: dict[str, str] = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if (table.startswith("tcp") and state == "0A") or table.startswith("udp"):  # 0A: LISTEN
                sockets[inode] = str(_proc_ip(local.split(":")[0]))
    out = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in sockets:
                    out.append((pid, name, sockets[target[8:-1]]))
        except OSError:
            continue
    return out


def _loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


@pytest.mark.slow
def test_embedded_ray_listens_on_loopback_only_keeps_its_files_private_and_logs_no_secret(tmp_path, monkeypatch,
                                                                                          own_ray):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    seen: list[tuple[int, str, str]] = []
    done = threading.Event()
    dirs: list[str] = []

    def sample() -> None:
        while not done.is_set():
            d = ray_local.session_dir()
            if d:
                dirs.append(d)
                seen.extend(_listening([os.getpid(), *ray_local.session_processes(d)]))
            time.sleep(0.5)

    poller = threading.Thread(target=sample, daemon=True)
    poller.start()
    try:
        res = run_study(parse(_spec(tmp_path)), say=lambda m: None, num_cpus=2, keep_ray=True)
        private = ray_local.session_dir()
        assert private and not private.startswith("/tmp/ray")
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700  # Ray's own 0777 folders sit inside it
        logs = [p for p in Path(private).rglob("*") if p.is_file() and not p.is_socket()]
        assert logs, "Ray wrote no files into its private dir"
        leaked = [str(p) for p in logs if CANARY.encode() in p.read_bytes()]
        assert not leaked
    finally:
        done.set()
        poller.join()
        driver.shutdown()
    assert res.counts["completed"] == 2
    names = {n for _, n, _ in seen}
    assert {"gcs_server", "raylet"} <= names, names  # the sampler saw Ray's servers and the trial workers
    assert len({pid for pid, _, _ in seen}) >= 4
    assert all(_loopback(ip) for _, _, ip in seen), sorted(set(seen))
    assert not Path(dirs[0]).exists() and not ray_local.session_processes(dirs[0])  # a clean shutdown leaves nothing
    for p in Store(tmp_path / "store").root.rglob("*"):
        assert not p.is_file() or CANARY.encode() not in p.read_bytes(), p


def _lock_info(root: Path) -> dict:
    try:
        return json.loads((root / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _running(root: Path) -> bool:
    try:
        return any(t["status"] == "running" for t in Store(root).trials())
    except Exception:  # noqa: BLE001 - a file being replaced while polling
        return False


@pytest.mark.slow
def test_killed_driver_leaves_no_ray_process_and_the_next_run_takes_over_its_lock(tmp_path):
    spec_d = _spec(tmp_path, "orphans", epochs=100_000, seeds=2)  # runs until it is killed
    root = tmp_path / "store"
    path = tmp_path / "orphans.yaml"
    path.write_text(yaml.safe_dump(spec_d))
    litmus = str(Path(sys.executable).parent / "litmus")
    proc = subprocess.Popen([litmus, "run", str(path), "--cpus", "1"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (_lock_info(root).get("ray_dir") and _running(root)) and time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        ray_dir = _lock_info(root)["ray_dir"]
        before = ray_local.session_processes(ray_dir)
        assert len(before) >= 3  # GCS, raylet, the trial's worker, agents
        # while it runs: a second driver on the store refuses in one line; status still reads
        second = subprocess.run([litmus, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.strip().count("\n") == 0 and "in use by another `litmus run`" in second.stderr
        assert f"PID {proc.pid}" in second.stderr
        status = subprocess.run([litmus, "status", str(root)], capture_output=True, text=True, timeout=120)
        assert status.returncode == 0 and "orphans" in status.stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 30  # the watchdog notices within a second, then SIGTERM, SIGKILL after 3 s
    while (ray_local.session_processes(ray_dir) or Path(ray_dir).exists()) and time.time() < deadline:
        time.sleep(0.5)  # the watchdog removes the dir after the processes' grace period
    assert not ray_local.session_processes(ray_dir)
    assert not any(ray_local._alive(p) for p in before)
    assert not Path(ray_dir).exists()
    said: list[str] = []
    with StoreLock(root, said.append):
        pass
    assert said and "taking over the stale lock" in said[0] and f"PID {proc.pid}" in said[0]


def test_stale_lock_takeover_ends_the_dead_runs_leftover_processes(tmp_path):
    """If the watchdog was gone too, the next run ends what the dead driver's Ray left (by its session marker)."""
    root = tmp_path / "store"
    Store(root)
    private = Path(os.path.realpath(__import__("tempfile").mkdtemp(prefix="litmus-ray-")))
    env = dict(os.environ, **{ray_local.MARKER: str(private)})
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / LOCK_NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid,
                                              "started": "2026-01-01T00:00:00", "ray_dir": str(private)}))
    said: list[str] = []
    try:
        with StoreLock(root, said.append):
            assert leftover.wait(timeout=10) is not None
    finally:
        if leftover.poll() is None:
            leftover.kill()
    assert "taking over the stale lock" in said[0] and "ended 1 leftover Ray process" in said[1]
    assert not private.exists()
    with StoreLock(root, said.append):  # released cleanly: no stale-lock message the next time
        pass
    assert len(said) == 2


def test_a_held_lock_refuses_a_second_driver_in_one_line(tmp_path, capsys):
    spec_d = _spec(tmp_path, "locked")
    path = tmp_path / "locked.yaml"
    path.write_text(yaml.safe_dump(spec_d))
    Store(tmp_path / "store")
    with StoreLock(tmp_path / "store", lambda m: None):
        with pytest.raises(LockError, match="in use by another"):
            StoreLock(tmp_path / "store").acquire()
        assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"PID {os.getpid()}" in err


def test_a_ray_system_error_of_an_actor_task_is_a_trial_failure_for_tune():
    """OutOfMemoryError (the memory monitor killed the worker while its actor started) and the like reach Tune as
    the loss of that trial's actor, which Tune retries; errors of the trainable itself stay as they are."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import ActorDiedError, OutOfMemoryError, RayActorError, RayTaskError, WorkerCrashedError

    from study import tune_patches

    for err in (OutOfMemoryError("Task was killed due to the node running low on memory"), WorkerCrashedError()):
        converted = tune_patches.as_actor_error(err)
        assert isinstance(converted, RayActorError) and converted.__cause__ is err
        assert type(err).__name__ in str(converted)
    for same in (ActorDiedError(), RayTaskError("train", "traceback", ValueError("bad"))):
        assert tune_patches.as_actor_error(same) is same
    tune_patches.survive_lost_workers()
    patched = RayActorManager._actor_task_failed
    tune_patches.survive_lost_workers()
    assert RayActorManager._actor_task_failed is patched  # idempotent

    class Actor:
        actor_id = "a1"
        errors: list = []
        _on_error = staticmethod(lambda actor, exc: Actor.errors.append(("actor", exc)))

    class Task:
        _tracked_actor = Actor()
        _on_error = staticmethod(lambda actor, exc: Actor.errors.append(("task", exc)))

    manager = RayActorManager.__new__(RayActorManager)
    manager._failed_actor_ids = set()
    manager._cleanup_actor = lambda tracked_actor: None
    RayActorManager._actor_task_failed(manager, Task(), OutOfMemoryError("killed"))
    assert [k for k, _ in Actor.errors] == ["actor", "task"] and manager._failed_actor_ids == {"a1"}
    assert all(isinstance(e, RayActorError) for _, e in Actor.errors)


def _kill_workers(ray_dir_of, stop: threading.Event, kills: list[int], n: int, seed: int = 0) -> None:
    import random

    rng = random.Random(seed)
    while not stop.is_set() and len(kills) < n:
        time.sleep(rng.uniform(0.5, 4.0))
        d = ray_dir_of()
        if not d:
            continue
        workers = []
        for pid in ray_local.session_processes(d):
            try:  # the process title: /proc/PID/comm is cut at 15 characters ("ray::RuntimeEnv")
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if name.startswith("ray::") and "Agent" not in name:  # trial actors and idle workers (start, reuse)
                workers.append(pid)
        if workers:
            victim = rng.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_trial_workers_killed_at_random_moments_cost_retries_not_rows(tmp_path, local_ray):
    def spec(name: str) -> dict:
        d = _spec(tmp_path / name, name, epochs=3, seeds=2, retries=20)
        d["datasets"][0]["options"] = {**OPTS, "n_train": 1500}
        d["methods"] = ["ew", {"name": "rlw", "distributions": ["normal"]}]
        return d

    def values(root: Path) -> dict:  # through the store's reader: the driver compacts at each stage's end
        from analysis.store import load

        t = load(root, include_loss=True).astype(object).to_dict("records")
        keys = [(r["seed"], r["method"], r["split"], r["epoch"], r["task"], r["metric"]) for r in t]
        assert len(keys) == len(set(keys))
        return {k: r["value"] for k, r in zip(keys, t)}

    ref = run_study(parse(spec("calm")), say=lambda m: None, num_cpus=2, keep_ray=True)  # one Ray for both
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=_kill_workers, args=(ray_local.session_dir, stop, kills, 4), daemon=True)
    killer.start()
    try:
        res = run_study(parse(spec("killed")), say=lambda m: None, num_cpus=2, keep_ray=True)
    finally:
        stop.set()
        killer.join()
    assert kills, "no worker was killed"
    assert ref.counts == res.counts == {"completed": 4, "failed": 0, "diverged": 0, "missing": 0}
    calm, killed = values(tmp_path / "calm" / "store"), values(tmp_path / "killed" / "store")
    assert len(calm) == 4 * 3 * 12 and killed == calm
