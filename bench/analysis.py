"""Benchmark of the analysis on a synthetic store of ~1,000,000 metric rows.

Layout as the study driver writes it: one Parquet file per trial. 5 datasets x
12 variants x 10 seeds = 600 trials, each 3 splits x 93 epochs x 6 metrics.
Prints the time of load, select (best-val) and the full report without
figures; the total must stay under 10 s on the 2-core CI machine.

    /work/venv/bin/python bench/analysis.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from analysis.synthetic import SyntheticStudy, make_store  # noqa: E402

VARIANTS = {"ew": 0.0, "uw": 0.3, "dwa": 0.2, "imtl_l": 0.4, "mgda": -0.5, "pcgrad": 0.1, "cagrad": 1.5,
            "nash_mtl": 1.2, "rlw:normal": 1.0, "rlw:uniform": 0.8, "rlw:dirichlet": 0.7, "rgw:normal": 0.6}


def main() -> int:
    spec = SyntheticStudy({f"ds{i}": VARIANTS for i in range(5)}, seeds=list(range(10)), epochs=93)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = make_store(Path(tmp) / "store", spec)
        n_files = len(list((store / "metrics").glob("*.parquet")))
        print(f"generate: {time.perf_counter() - t0:.2f} s ({n_files} files, not timed below)")
        times = {}
        t = time.perf_counter()
        frame = analysis.load(store)
        times["load"] = time.perf_counter() - t
        print(f"load:   {times['load']:.2f} s ({len(frame):,} rows)")
        t = time.perf_counter()
        sel = analysis.select(frame)
        times["select"] = time.perf_counter() - t
        print(f"select: {times['select']:.2f} s ({len(sel):,} values)")
        t = time.perf_counter()
        analysis.write_report(store, Path(tmp) / "report", figures=False)
        times["report"] = time.perf_counter() - t
        print(f"report (load + everything, no figures): {times['report']:.2f} s")
        total = sum(times.values())
        print(f"total:  {total:.2f} s (budget 10 s) -> {'OK' if total < 10 else 'TOO SLOW'}")
        # the same store with K = 3 tuning replicates per method (3x the final trials, 10 seeds each)
        spec3 = SyntheticStudy({f"ds{i}": VARIANTS for i in range(5)}, seeds=list(range(10)), epochs=31, replicates=3,
                     tuning_sd=0.5)
        store3 = make_store(Path(tmp) / "store3", spec3)
        t = time.perf_counter()
        analysis.write_report(store3, Path(tmp) / "report3", figures=False)
        k3 = time.perf_counter() - t
        print(f"report with K = 3 tuning replicates ({3 * 600} trials x 31 epochs, hierarchical bootstrap): "
              f"{k3:.2f} s (budget 10 s) -> {'OK' if k3 < 10 else 'TOO SLOW'}")
        return 0 if total < 10 and k3 < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
