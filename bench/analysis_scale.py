"""Analysis at cluster scale: `litmus report --no-figures` on stores of 20,000 and 30,000 trials.

The stores are generated (not timed) directly in the compacted layout that `litmus compact` leaves
(docs/store.md): one Parquet file per study x stage x dataset x split under ``compacted/``, named by
``compacted/manifest.json``, and one compacted trials file. Each dataset has the 9 metrics of NYUv2
(3 tasks), every trial a val and a test split at every epoch:

- ``--case 20k``: 5 datasets x 20 variants x 2 architectures x 100 seeds = 20,000 trials x 20 epochs
  (7.2 M metric rows); targets < 30 s and < 2 GB.
- ``--case 30k``: 5 x 20 x 3 x 100 = 30,000 trials x 200 epochs (108 M rows); targets < 60 s and < 4 GB.

`litmus report` runs in a child process; its wall time and peak RSS (``wait4``'s ``ru_maxrss``) are printed.

    /work/venv/bin/python bench/analysis_scale.py              # both cases
    /work/venv/bin/python bench/analysis_scale.py --case 20k
    /work/venv/bin/python bench/analysis_scale.py --case 30k --dir /tmp --keep   # keep the store to profile
    /work/venv/bin/python bench/analysis_scale.py --case 30k --store /tmp/litmus-scale-30k-.../store
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.schema import COMPACTED_DIR, MANIFEST, MANIFEST_FORMAT, METRICS_SCHEMA, TRIALS_SCHEMA  # noqa: E402

# NYUv2's 9 metrics: (task, metric, higher_is_better, final value of EW)
METRICS = [("segmentation", "miou", True, 0.53), ("segmentation", "pix_acc", True, 0.75),
           ("depth", "abs_err", False, 0.38), ("depth", "rel_err", False, 0.16),
           ("normal", "mean", False, 23.5), ("normal", "median", False, 17.0),
           ("normal", "within_11.25", True, 0.35), ("normal", "within_22.5", True, 0.61),
           ("normal", "within_30", True, 0.72)]
VARIANTS = ["ew", "rlw:normal", "rlw:uniform", "rlw:dirichlet", "rgw:normal", "uw", "dwa", "gls", "si", "imtl_l",
            "mgda", "pcgrad", "graddrop", "cagrad", "nash_mtl", "gradvac", "imtl_g", "aligned_mtl", "upgrad", "famo"]
CASES = {"20k": dict(archs=["hps", "mtan"], epochs=20, seconds=30, gb=2.0),
         "30k": dict(archs=["hps", "mtan", "cgc"], epochs=200, seconds=60, gb=4.0)}
DATASETS = [f"ds{i}" for i in range(5)]
SEEDS = 100
STUDY, STAGE = "scale", "final"


def _tid(*parts: object) -> str:
    return "f" + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:15]


def generate(root: Path, archs: list[str], epochs: int, chunk: int = 200) -> tuple[int, int]:
    """Write the compacted store; returns (trials, metric rows)."""
    rng = np.random.default_rng(0)
    gen = root / COMPACTED_DIR / "g000001"
    effects = {v: (0.0 if v == "ew" else float(rng.normal(0, 1))) for v in VARIANTS}
    hib = np.array([m[2] for m in METRICS])
    sign = np.where(hib, 1.0, -1.0)
    base = np.array([m[3] for m in METRICS])
    k = len(METRICS)
    ep = np.arange(1, epochs + 1)
    curve = 0.3 * np.exp(-ep / max(epochs / 4, 1.0))
    entries: dict[str, list[dict]] = {"metrics": [], "trials": []}
    trial_rows: list[dict] = []
    n_rows = 0
    for ds in DATASETS:
        trials = [(arch, v, seed) for arch in archs for v in VARIANTS for seed in range(SEEDS)]
        ids = [_tid(STUDY, STAGE, ds, arch, v, seed) for arch, v, seed in trials]
        offset = rng.normal(0, 0.5, size=(len(trials), k))
        final = base * (1 + sign * (np.array([effects[v] for _, v, _ in trials])[:, None] + offset) / 100)
        for split in ("val", "test"):
            rel = f"g000001/metrics/{STUDY}/{STAGE}/{ds}/{split}.parquet"
            path = root / COMPACTED_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(path, METRICS_SCHEMA, compression="zstd") as w:
                for a in range(0, len(trials), chunk):
                    b = min(a + chunk, len(trials))
                    n_t = b - a
                    t = np.repeat(np.arange(a, b), epochs * k)
                    e = np.tile(np.repeat(ep, k), n_t)
                    j = np.tile(np.arange(k), n_t * epochs)
                    value = final[t, j] * (1 - sign[j] * curve[e - 1]) * (1 + rng.normal(0, 0.1, t.size) / 100)
                    meth = [v.partition(":") for _, v, _ in trials[a:b]]
                    per_trial = lambda xs: pa.array(xs, pa.string()).take(pa.array(t - a))  # noqa: E731
                    const = lambda x: pa.repeat(pa.scalar(x, pa.string()), t.size)  # noqa: E731
                    cols = {
                        "study": const(STUDY), "stage": const(STAGE),
                        "trial_id": per_trial(ids[a:b]), "dataset": const(ds),
                        "arch": per_trial([x[0] for x in trials[a:b]]), "method": per_trial([m[0] for m in meth]),
                        "distribution": per_trial([m[2] or None for m in meth]),
                        "seed": pa.array(np.array([x[2] for x in trials[a:b]], dtype=np.int64)[t - a]),
                        "split": const(split), "epoch": pa.array(e.astype(np.int64)),
                        "task": pa.array([m[0] for m in METRICS], pa.string()).take(pa.array(j)),
                        "metric": pa.array([m[1] for m in METRICS], pa.string()).take(pa.array(j)),
                        "value": pa.array(value), "higher_is_better": pa.array(hib[j]),
                    }
                    w.write_table(pa.table(cols, schema=METRICS_SCHEMA), row_group_size=1 << 20)
                    n_rows += t.size
            entries["metrics"].append({"study": STUDY, "stage": STAGE, "dataset": ds, "table": "metrics", "split": split, "file": rel, "rows": len(trials) * epochs * k})
        for (arch, v, seed), tid in zip(trials, ids):
            m, _, dist = v.partition(":")
            trial_rows.append({"study": STUDY, "stage": STAGE, "trial_id": tid, "dataset": ds, "arch": arch,
                               "method": m, "distribution": dist or None, "seed": seed, "config": "{}",
                               "status": "completed", "epochs": epochs, "host": "bench"})
    rel = f"g000001/trials/{STUDY}/{STAGE}.parquet"
    (root / COMPACTED_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(trial_rows, schema=TRIALS_SCHEMA), root / COMPACTED_DIR / rel)
    entries["trials"].append({"file": rel, "rows": len(trial_rows)})
    for table in ("metrics", "trials", "weights"):
        (root / table).mkdir(exist_ok=True)
    manifest = {"format": MANIFEST_FORMAT, "generation": 1, "tables": entries,
                "trials": sorted(r["trial_id"] for r in trial_rows)}
    (root / COMPACTED_DIR / MANIFEST).write_text(json.dumps(manifest))
    return len(trial_rows), n_rows


def run_report(store: Path, out: Path) -> tuple[float, float, float]:
    """`litmus report --no-figures` in a child process: (wall seconds, CPU seconds, peak RSS in GB)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "report", str(store), "--no-figures",
                             "--out", str(out)], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"litmus report failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 ** 2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=[*CASES, "all"], default="all")
    p.add_argument("--dir", default=None, help="where to generate the stores (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the generated store (its path is printed)")
    p.add_argument("--store", default=None, help="report on this already generated store of --case (not deleted)")
    args = p.parse_args()
    ok = True
    results = []
    for name in (CASES if args.case == "all" else [args.case]):
        c = CASES[name]
        tmp = Path(tempfile.mkdtemp(prefix=f"litmus-scale-{name}-", dir=args.dir))
        store = Path(args.store) if args.store else tmp / "store"
        try:
            if not args.store:
                t0 = time.perf_counter()
                n_trials, n_rows = generate(store, c["archs"], c["epochs"])
                size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1024 ** 3
                print(f"[{name}] generated {n_trials:,} trials x {c['epochs']} epochs = {n_rows:,} metric rows, "
                      f"{size:.2f} GB on disk in {time.perf_counter() - t0:.0f} s (not timed)", flush=True)
            load = os.getloadavg()[0]
            seconds, cpu, gb = run_report(store, tmp / "report")
            good = seconds < c["seconds"] and gb < c["gb"]
            ok &= good
            results.append((name, seconds, cpu, gb, c, good, load, os.getloadavg()[0]))
            print(f"[{name}] litmus report --no-figures: {seconds:.1f} s wall, {cpu:.1f} s CPU (target < {c['seconds']} s), "
                  f"peak RSS {gb:.2f} GB (target < {c['gb']:g} GB) -> {'OK' if good else 'MISSED'} "
                  f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)", flush=True)
        finally:
            if args.keep and not args.store:
                print(f"[{name}] store kept: {store}")
                shutil.rmtree(tmp / "report", ignore_errors=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    print("\ncase | wall (target) | CPU user+sys | peak RSS (target) | load average before / after | result")
    for name, seconds, cpu, gb, c, good, before, after in results:
        print(f"{name} | {seconds:.1f} s (< {c['seconds']} s) | {cpu:.1f} s | {gb:.2f} GB (< {c['gb']:g} GB) | "
              f"{before:.2f} / {after:.2f} | {'OK' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
