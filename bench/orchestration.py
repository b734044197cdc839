"""Orchestration benchmark: Ray Tune throughput and per-trial overhead of `litmus run` (prints ratios; not a test).

1. Equal trials of about ``--seconds`` each: the sequential time of one trial
   (plain ``Trainer`` in this process, one thread) x N, divided by the
   number of CPUs, is the ideal; the study's final stage through Ray Tune
   (embedded local Ray, actor reuse) is measured against it.
2. Tiny trials, two study sizes: the per-trial overhead is the slope of the
   wall time over the number of trials (so the one-time start of the trial
   workers, printed separately, cancels out).

3. ``--scale N`` (5,000 by default with ``--scale``; 20,000 with ``--large``): one study of N tiny trials;
   prints the per-trial overhead over the whole run and in the first and last tenth of the completions
   (late-run slowdown), the driver's memory during the run (peak), after it and after the run summary
   that ``litmus run`` prints, the time to rerun the finished study (``litmus run`` in a fresh process:
   every trial skipped) and of ``litmus status``, and the load average (the machine may be shared).

    python -m bench.orchestration [--trials 6] [--seconds 20] [--tiny 8 32]   (-m: bench/analysis.py would shadow the analysis package)
    python -m bench.orchestration --scale 5000 [--large] [--profile]
    python -m bench.orchestration --store-only 5000   (status, compact and rerun only; the store built without Ray)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import torch

from study import driver
from study.run import run_study
from study.spec import parse
from trainables.config import TrainConfig
from trainables.trainer import Trainer


def spec(name: str, store: str, n_train: int, epochs: int, seeds: int) -> Any:
    return parse(spec_dict(name, store, n_train, epochs, seeds))


def spec_dict(name: str, store: str, n_train: int, epochs: int, seeds: int) -> dict[str, Any]:
    return {
        "name": name, "store": store,
        "datasets": [{"name": "multi_digits", "epochs": epochs,
                      "options": {"n_train": n_train, "n_val": 200, "n_test": 200, "width": 16}}],
        "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": seeds},
        "checkpoint_every": 1,
    }


def rss_mb() -> float:
    """The driver process's resident memory (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sequential_seconds(n_train: int, epochs: int, seed: int = 0) -> float:
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="multi_digits", method="ew", seed=seed, epochs=epochs, device="cpu", num_threads=1,
                      dataset_options={"n_train": n_train, "n_val": 200, "n_test": 200, "width": 16})
    t0 = time.perf_counter()
    for _ in Trainer(cfg).epochs():
        pass
    return time.perf_counter() - t0


def sequential_in_child(n_train: int, epochs: int) -> float:
    """:func:`sequential_seconds` after a warm-up call, in a fresh process: the bench's driver then stays like
    ``litmus run``'s, which never trains (a ``Trainer`` here would hold the data and raise glibc's trim
    threshold in the driver to 512 MB, trainables/heap.py, inflating the driver's memory measured below)."""
    import subprocess
    import sys

    code = (f"from bench.orchestration import sequential_seconds as s; s({n_train}, {epochs}); "
            f"print(s({n_train}, {epochs}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(name: str, n_train: int, epochs: int, trials: int, slots: int) -> tuple[float, float]:
    """(sequential seconds of one trial, wall seconds of the study); the sequential time is the
    mean of one run before and one after the study, so machine drift hits both sides alike."""
    before = sequential_seconds(n_train, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        s = spec(name, os.path.join(tmp, "store"), n_train, epochs, trials)
        driver.connect(s, None, slots)  # Ray start is not part of the measured study time
        t0 = time.perf_counter()
        res = run_study(s, num_cpus=slots, say=lambda m: None, keep_ray=True)
        wall = time.perf_counter() - t0
        assert res.counts["completed"] == trials, res.counts
    return (before + sequential_seconds(n_train, epochs)) / 2, wall


def size_for(seconds: float, epochs: int) -> int:
    """Training-set size whose trial takes about ``seconds`` sequentially (two proportional refinements)."""
    sequential_seconds(500, 1)  # warm-up (imports, data)
    n = 4000
    for _ in range(2):
        n = max(500, int(n * seconds / sequential_seconds(n, epochs)))
    return n


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: timings are read against them)."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def tenth_overheads(done: list[float], cpus: int, one: float) -> tuple[float, float]:
    """Per-trial overhead (seconds per trial per slot beyond the trial's own time) in the first and the last
    tenth of the completions (``done``: the driver's clock when each trial's end was recorded)."""
    done = sorted(done)
    tenth = max(2, len(done) // 10)
    spans = [done[tenth - 1] - done[0], done[-1] - done[-tenth]]
    return spans[0] / (tenth - 1) * cpus - one, spans[1] / (tenth - 1) * cpus - one


def timed_cli(*args: str) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + sys), exit code and output of one `litmus` command in a fresh process
    (as a user runs it); the CPU time is what a shared machine's load does not inflate much."""
    import resource
    import subprocess
    import sys

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    out = subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True)
    return time.perf_counter() - t0, cpu() - c0, out.returncode, out.stdout + out.stderr


class StackSampler:
    """A low-overhead sampling profile of one thread (the driver's): every ``every`` seconds its stack is read
    (``sys._current_frames``) and each function on it counted once (inclusive time share)."""

    def __init__(self, thread_id: int, every: float = 0.05) -> None:
        import collections
        import threading

        self.thread_id, self.every = thread_id, every
        self.inclusive: collections.Counter = collections.Counter()
        self.leaf: collections.Counter = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import sys

        while not self._stop.wait(self.every):
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            self.samples += 1
            seen = set()
            leaf = True
            while frame is not None:
                code = frame.f_code
                key = f"{code.co_filename.split('site-packages/')[-1]}:{code.co_name}"
                if leaf:
                    self.leaf[key] += 1
                    leaf = False
                if key not in seen:
                    seen.add(key)
                    self.inclusive[key] += 1
                frame = frame.f_back

    def __enter__(self) -> "StackSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, top: int = 25) -> str:
        n = max(1, self.samples)
        lines = [f"profile of the driver's main thread ({self.samples} samples every {self.every * 1000:.0f} ms):"]
        lines += [f"  {c / n:6.1%} incl  {k}" for k, c in self.inclusive.most_common(top)]
        lines += ["  leaves:"] + [f"  {c / n:6.1%} self  {k}" for k, c in self.leaf.most_common(top // 2)]
        return "\n".join(lines)


def scale(n: int, cpus: int, profile: bool = False) -> None:
    """One study of ``n`` tiny trials: overhead, late-run slowdown, driver memory, resume and status times."""
    import threading

    import yaml

    from study.run_cli import summary

    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.5)

    print(f"scale: {n} tiny trials on {cpus} CPUs; load average at the start {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="litmus-orch-") as tmp:
        d = spec_dict("bench-scale", os.path.join(tmp, "store"), 200, 1, n)
        s = parse(d)
        driver.connect(s, None, cpus)
        one = sequential_in_child(200, 1)  # after a warm-up call (imports, the data's first load)
        threading.Thread(target=sample, daemon=True).start()
        sampler = StackSampler(threading.get_ident()) if profile else None
        done: list[float] = []  # the driver's clock at each trial's end (its progress line)
        tenths: list[float] = []  # the driver's RSS when each tenth of the trials has finished

        def said(m: str) -> None:
            if m.startswith("[final") and " done " in m:
                done.append(time.perf_counter())
                if len(done) % max(1, n // 10) == 0:
                    tenths.append(rss_mb())

        t0 = time.perf_counter()
        if sampler:
            with sampler:
                res = run_study(s, num_cpus=cpus, say=said, keep_ray=True)
        else:
            res = run_study(s, num_cpus=cpus, say=said, keep_ray=True)
        wall = time.perf_counter() - t0
        stop.set()
        if sampler:
            print(sampler.report(), flush=True)
        after = rss_mb()
        assert res.counts["completed"] == n, res.counts
        t_sum = time.perf_counter()
        summary(res.store.root, s.name, s.baseline)  # what `litmus run` prints at its end
        t_sum = time.perf_counter() - t_sum
        after_summary = rss_mb()
        load_run = load_average()
        assert len(done) == n, (len(done), n)
        first, last = tenth_overheads(done, cpus, one)
        overhead = wall / n * cpus - one
        print(f"scale: {n} tiny trials ({one:.2f}s each) on {cpus} CPUs in {wall:.0f}s -> overhead {overhead * 1000:.0f} ms "
              f"per trial per slot; completion time per trial per slot in the first tenth {(first + one) * 1000:.0f} ms, "
              f"in the last tenth {(last + one) * 1000:.0f} ms ({(last + one) / (first + one) - 1:+.0%} late-run slowdown)")
        print(f"scale: driver RSS peak during the run {peak[0]:.0f} MB, after it {after:.0f} MB, after the run summary "
              f"{after_summary:.0f} MB ({after_summary / peak[0] - 1:+.0%} vs during; summary {t_sum:.1f}s)")
        if len(tenths) >= 9:  # the slope from the first to the ninth tenth (the stage's end compacts the store)
            slope = (tenths[8] - tenths[0]) * 1024 / (8 * (n // 10))
            print(f"scale: driver RSS after each tenth of the trials (MB): {' '.join(f'{r:.0f}' for r in tenths)} "
                  f"-> {slope:.1f} KB per finished trial between the first and the ninth tenth")
        print(f"scale: load average after the run {load_run}", flush=True)
        driver.shutdown()  # the rerun starts its own Ray, as `litmus run` does
        path = os.path.join(tmp, "spec.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(d, f)
        resume, resume_cpu, rc, out = timed_cli("run", path, "--cpus", str(cpus))
        assert rc == 0 and f"final stage: {n} completed" in out, out[-2000:]
        assert "nothing to run" in out, out[-2000:]  # answered by the saved plan and the trials table
        status, status_cpu, rc, out = timed_cli("status", s.store)
        assert rc == 0, out[-2000:]
        print(f"scale: rerun of the finished study (`litmus run`, fresh process, with its summary) {resume:.1f}s "
              f"({resume_cpu:.1f}s CPU); `litmus status` {status:.2f}s ({status_cpu:.2f}s CPU)")
        print(f"scale: load average at the end {load_average()}")


def finished_store(n: int, root: str) -> dict[str, Any]:
    """A finished store of ``n`` tiny trials in the driver's layout, built without Ray: one real trial trained
    in this process (``litmus train``'s path), its record and rows copied under the real plan's ids and seeds,
    one metrics and weights part per trial, as the driver writes them. Returns the spec (a dict)."""
    import json

    import pyarrow as pa

    from study.plan import final_jobs, save_plan
    from study.single import run_single
    from study.store import Store

    d = spec_dict("bench-scale", os.path.join(root, "store"), 200, 1, n)
    s = parse(d)
    store = Store(s.store)
    ds = s.datasets[0]
    template = Store(os.path.join(root, "template"))
    tid, status, _ = run_single(TrainConfig(dataset=ds.name, method="ew", seed=0, epochs=1, device="cpu",
                                            num_threads=1, dataset_options=dict(ds.options)), template)
    assert status == "completed", status
    (rec,) = template.trials()
    rows = [pa.parquet.read_table(p) for _, _, p in template.parts("metrics", tid)]
    weights = [pa.parquet.read_table(p) for _, _, p in template.parts("weights", tid)]
    jobs = final_jobs(s, {})
    save_plan(s, store.root, [], jobs)

    def retag(t: pa.Table, job: Any) -> pa.Table:
        for name, value in (("trial_id", job.trial_id), ("study", s.name), ("stage", "final"),
                            ("seed", job.config["seed"])):
            if name in t.column_names:
                i = t.column_names.index(name)
                t = t.set_column(i, t.schema.field(i), pa.array([value] * t.num_rows, t.schema.field(i).type))
        return t

    from study.store import _atomic_write

    for job in jobs:
        store.write_trial(dict(rec, trial_id=job.trial_id, study=s.name, stage="final", seed=job.config["seed"],
                               config=json.dumps(job.config, sort_keys=True)))
        for kind, tables in (("metrics", rows), ("weights", weights)):
            for t in tables:
                (store.root / kind / job.trial_id).mkdir(exist_ok=True)
                _atomic_write(retag(t, job), store.root / kind / job.trial_id / "000001.parquet")
    return d


def store_only(n: int) -> None:
    """``--store-only N``: the commands that read a finished N-trial study, each in a fresh process, on a store
    built without Ray (finished_store): `litmus status` before compaction (every record a one-row file),
    `litmus compact`, `litmus status` and the rerun of the finished study (`litmus run`, with its summary)."""
    import yaml

    print(f"store-only: {n} trials; load average at the start {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="litmus-orch-") as tmp:
        t0 = time.perf_counter()
        d = finished_store(n, tmp)
        print(f"store-only: built in {time.perf_counter() - t0:.0f}s (not timed below)", flush=True)
        path = os.path.join(tmp, "spec.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(d, f)
        for what, args, check in (
                ("`litmus status` (per-trial records)", ("status", d["store"]), "bench-scale"),
                ("`litmus compact`", ("compact", d["store"]), f"{n} finished trials compacted"),
                ("`litmus status` (compacted)", ("status", d["store"]), "bench-scale"),
                ("rerun of the finished study (`litmus run`, with its summary)", ("run", path, "--cpus", "2"),
                 "nothing to run")):
            wall, cpu, rc, out = timed_cli(*args)
            assert rc == 0 and check in out, out[-2000:]
            print(f"store-only: {what} {wall:.2f}s ({cpu:.2f}s CPU); load average {load_average()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tiny", type=int, nargs=2, default=[8, 32], metavar=("N1", "N2"))
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--scale", type=int, nargs="?", const=5000, default=None,
                    help="only the study of N tiny trials (default 5000)")
    ap.add_argument("--large", action="store_true", help="with --scale: 20,000 trials")
    ap.add_argument("--profile", action="store_true", help="with --scale: a sampling profile of the driver")
    ap.add_argument("--store-only", type=int, default=None, metavar="N",
                    help="only time status, compact and the rerun on a finished N-trial store built without Ray")
    a = ap.parse_args()
    if a.store_only is not None:
        store_only(a.store_only)
        return
    if a.scale is not None:
        scale(20000 if a.large else a.scale, a.cpus, a.profile)
        return
    epochs = 10  # a realistic report/checkpoint rate: one report and checkpoint per epoch
    n_train = size_for(a.seconds, epochs)
    one, wall = measure("bench-equal", n_train, epochs, a.trials, a.cpus)
    ideal = one * a.trials / a.cpus
    print(f"equal trials: {a.trials} x {one:.1f}s ({epochs} epochs of {n_train} images) on {a.cpus} CPUs: "
          f"ideal {ideal:.1f}s, Ray Tune {wall:.1f}s (Ray already started; includes starting the trial workers) "
          f"-> throughput {ideal / wall:.0%} of ideal")
    # per-trial overhead: the slope of wall time over the number of tiny trials (fixed start-up cancels)
    n1, n2 = a.tiny
    one_t, w1 = measure("bench-tiny-a", 200, 1, n1, a.cpus)
    rss1 = rss_mb()
    _, w2 = measure("bench-tiny-b", 200, 1, n2, a.cpus)
    rss2 = rss_mb()
    _, _ = measure("bench-tiny-c", 200, 1, 4 * n2, a.cpus)
    rss3 = rss_mb()
    per_slot = (n2 - n1) / a.cpus
    overhead = ((w2 - w1) - one_t * per_slot) / per_slot
    startup = w1 - (one_t + overhead) * n1 / a.cpus
    print(f"tiny trials ({one_t:.2f}s each): {n1} in {w1:.1f}s, {n2} in {w2:.1f}s -> overhead {overhead:.2f}s per trial "
          f"per slot (actor reuse); one-time start of the trial workers {startup:.1f}s per study")
    print(f"driver memory (RSS) after studies of {n1}, {n2} and {4 * n2} tiny trials: "
          f"{rss1:.0f}, {rss2:.0f}, {rss3:.0f} MB")


if __name__ == "__main__":
    main()
