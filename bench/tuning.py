"""Tuning-stage time per method (prints times and ratios to EW; not a test).

From a finished store's trials table: per method, the tuning trials, their summed
training time (``wall_time_s``: worker-seconds spent in the trainer), the mean per
trial and its ratio to EW's, and the stage's wall-clock span (first start to last
finish of the finished tuning trials, the EW reference included). Without a store, runs a
small study first (multi_digits, four methods, common random numbers, 3 trials).

    python bench/tuning.py [STORE] [--study NAME]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # not bench/: its analysis.py would hide the package

from study.run import run_study  # noqa: E402
from study.spec import parse  # noqa: E402
from study.store import Store  # noqa: E402


def small_study(store: str):
    return parse({
        "name": "tuningbench", "store": store,
        "datasets": [{"name": "multi_digits", "epochs": 3,
                      "options": {"n_train": 1200, "n_val": 300, "n_test": 300, "width": 16}}],
        "methods": ["ew", {"name": "rlw", "distributions": ["normal"]}, "uw", "pcgrad"],
        "tuning": {"trials": 3, "seeds": [1000], "shared": {"lr": {"low": 1e-3, "high": 1e-2}}},
        "final": {"seeds": 1},
    })


def report(store: Path, study: str | None = None) -> str:
    trials = [t for t in Store(store, create=False).trials(study) if t["stage"] == "tune" and t["status"] != "running"]
    if not trials:
        return f"no tuning trials in {store}"
    plans = {}
    for p in (store / "studies").glob("*.json"):
        plans.update({tid: True for tid in json.loads(p.read_text()).get("reference_ids") or []})
    per: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        key = "ew (reference)" if t["trial_id"] in plans else t["method"]
        per[key].append(float(t["wall_time_s"] or 0.0))
    times = [dt.datetime.fromisoformat(t[k]) for t in trials for k in ("started_at", "finished_at") if t[k]]
    span = (max(times) - min(times)).total_seconds()
    ew = sum(per["ew"]) / len(per["ew"]) if per.get("ew") else float("nan")
    lines = [f"tuning stage of {store}: {len(trials)} trials, {span:.0f}s wall clock "
             f"({sum(sum(v) for v in per.values()):.0f} worker-seconds in training)",
             f"{'method':16s} {'trials':>6s} {'total s':>8s} {'mean s':>7s} {'x EW':>5s}"]
    for m in sorted(per, key=lambda k: -sum(per[k])):
        mean = sum(per[m]) / len(per[m])
        lines.append(f"{m:16s} {len(per[m]):6d} {sum(per[m]):8.1f} {mean:7.1f} {mean / ew:5.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", nargs="?", default=None)
    ap.add_argument("--study", default=None)
    a = ap.parse_args()
    if a.store is None:
        root = Path(tempfile.mkdtemp(prefix="litmus-tuningbench-")) / "store"
        run_study(small_study(str(root)), say=lambda m: None)
        print(report(root, "tuningbench"))
    else:
        print(report(Path(a.store), a.study))


if __name__ == "__main__":
    main()
