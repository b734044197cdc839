"""``litmus run [SPEC]`` and ``litmus status STORE`` (registered by study/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from litmus.errors import ConfigError

from .console import eprint


def register(sub: Any) -> None:
    r = sub.add_parser("run", help="run (or resume) a study on Ray: tuning, then the final seeds")
    r.add_argument("spec", nargs="?", default=None, help="study spec (YAML); default: the shipped quickstart")
    r.add_argument("--address", default=None, help="existing Ray cluster (HOST:PORT, ray://..., auto); "
                   "default: $RAY_ADDRESS or an embedded local Ray")
    r.add_argument("--store", default=None, help="override the spec's store path")
    r.add_argument("--retry-failed", action="store_true", help="run failed and diverged trials again")
    r.add_argument("--cpus", type=int, default=None, help="CPUs of the embedded local Ray (default: all)")
    r.add_argument("--ray-storage", default=None,
                   help="Ray Tune storage for checkpoints (shared path or URI on a cluster; default <store>/ray)")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compact", help="merge finished trials' files into partitioned files with a manifest")
    c.add_argument("store", help="results store directory")
    c.set_defaults(func=cmd_compact)
    s = sub.add_parser("status", help="per stage, dataset and method: completed, running, failed, missing trials")
    s.add_argument("store", help="results store directory")
    s.add_argument("--study", default=None, help="one study of the store (default: all)")
    s.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> int:
    from . import spec as spec_mod
    from .driver import NoSpaceError, RayRunError, no_space
    from .run import run_study

    path = Path(args.spec) if args.spec else spec_mod.quickstart_path()
    spec = spec_mod.load(path)
    if args.store:
        spec.store = Path(args.store).expanduser().resolve()
    warning = design_warning(spec)
    if warning:
        eprint(f"litmus: warning: {warning}")
    try:
        result = run_study(spec, address=args.address, retry_failed=args.retry_failed, say=eprint,
                           num_cpus=args.cpus, ray_storage=args.ray_storage, live=True)
    except KeyboardInterrupt:
        eprint(f"litmus: interrupted; rerun `litmus run {path}` to resume (store: {spec.store})")
        return 130
    except NoSpaceError as err:
        eprint(f"litmus: {err}; free space, then rerun `litmus run {path}` to resume (store intact: {spec.store})")
        return 1
    except OSError as err:
        full = no_space(err)
        if full is None:
            raise
        eprint(f"litmus: {full}; free space, then rerun `litmus run {path}` to resume (store intact: {spec.store})")
        return 1
    except RayRunError as err:
        eprint(f"litmus: {err}; rerun `litmus run {path}` to resume (store: {spec.store})")
        return 1
    c = result.counts
    if c["completed"]:
        try:
            print(summary(result.store.root, spec.name, spec.baseline))
        except ValueError as err:  # e.g. no cell has both the baseline and a completed trial: the counts still show
            print(f"(no summary table: {str(err).strip().splitlines()[0] if str(err).strip() else err})\n")
            print(status_table(result.store.root, spec.name))
    else:  # nothing completed: every cell's counts instead of a table of results
        print(status_table(result.store.root, spec.name))
    if c["completed"] and spec.sequential:
        from analysis.sequential import load_decisions, render
        print("\nSequential verdicts (decided round by round; docs/statistics.md):\n")
        print(render(load_decisions(result.store.root, spec.name)))
    print(f"\nfinal stage: {c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, "
          f"{c['missing']} missing ({result.seconds:.0f}s)")
    print(f"store: {result.store.root}")
    return 0 if c["completed"] and c["failed"] == c["missing"] == 0 else 1


def design_warning(spec: Any) -> str | None:
    """One line if no verdict of the study could be significant (analysis.check_design with the verdicts'
    defaults: one-sided t on the final seeds, or on the K replicate means; Holm over every variant of every
    dataset x arch against random weighting)."""
    from analysis import check_design

    variants = sum(len(m.distributions) for m in spec.methods)
    family = max(1, len(spec.datasets) * len(spec.archs) * (variants - 1))
    chk = check_design(seeds=len(spec.final_seeds), test="t", family_size=family,
                       replicates=spec.tuning.replicates if spec.tuning.enabled else 1)
    return None if chk.possible else f"final.seeds: {chk.message}"


def summary(store_root: Path, study: str, baseline: str) -> str:
    """The analysis's paper-style table if the analysis package provides it, else a plain table."""
    try:
        from analysis import summary_table  # type: ignore[attr-defined]
    except ImportError:
        return plain_table(store_root, study)
    return summary_table(str(store_root), baseline=baseline, study=study)


def plain_table(store_root: Path, study: str) -> str:
    """Mean test metrics at the last epoch per dataset x method variant over the final seeds (no statistics)."""
    from analysis.store import read_metrics

    t = read_metrics(store_root, study=study, stage="final", split="test")  # per-trial and compacted files
    if not t.num_rows:
        return "(no results)"
    rows = t.to_pylist()
    last: dict[str, int] = {}
    for r in rows:
        last[r["trial_id"]] = max(last.get(r["trial_id"], 0), r["epoch"])
    agg: dict[tuple, list[float]] = {}
    metrics: dict[str, list[str]] = {}
    for r in rows:
        if r["epoch"] != last[r["trial_id"]] or r["metric"] == "loss":
            continue
        var = r["method"] + (f"[{r['distribution']}]" if r["distribution"] else "")
        col = f"{r['task']}.{r['metric']}"
        agg.setdefault((r["dataset"], var, col), []).append(r["value"])
        metrics.setdefault(r["dataset"], [])
        if col not in metrics[r["dataset"]]:
            metrics[r["dataset"]].append(col)
    out = []
    for ds, cols in metrics.items():
        variants = sorted({k[1] for k in agg if k[0] == ds})
        w = max(len("method"), *(len(v) for v in variants))
        out.append(f"{ds} (test, last epoch, mean over seeds)")
        out.append(f"{'method':<{w}}  " + "  ".join(f"{c:>16}" for c in cols))
        for v in variants:
            cells = []
            for c in cols:
                vals = agg.get((ds, v, c), [])
                cells.append(f"{sum(vals) / len(vals):>12.4f} n={len(vals):<2}" if vals else f"{'-':>16}")
            out.append(f"{v:<{w}}  " + "  ".join(cells))
        out.append("")
    return "\n".join(out).rstrip()


def status_table(store_root: Path, study: str | None = None) -> str:
    """Per stage, dataset/arch/method: completed, running, failed, diverged, missing (planned - present)."""
    from .saved_plan import load_plan
    from .store import Store

    store = Store(store_root, create=False)
    plans = load_plan(store.root, study)
    if not plans:
        raise ConfigError(f"no study plan under {store.root / 'studies'}" + (f" for study {study!r}" if study else ""))
    lines = []
    for plan in plans:
        name = plan["spec"]["name"]
        ref_ids = set(plan.get("reference_ids") or [])
        final_ids = set(plan.get("final_ids") or [])
        counts: dict[tuple[str, str], Counter] = {}
        for rec in store.trials(name, columns=["trial_id", "stage", "dataset", "arch", "method", "distribution",
                                               "status"]):
            stage = "reference" if rec["trial_id"] in ref_ids else rec["stage"]
            if stage == "final" and plan.get("final_ids") is not None and rec["trial_id"] not in final_ids:
                stage = "final (stale)"
            per_variant = stage.startswith("final") and rec["distribution"] and not plan["spec"].get("sequential")
            method = rec["method"] + (f"[{rec['distribution']}]" if per_variant else "")  # a final cell
            key = (stage, f"{rec['dataset']}/{rec['arch']}/{method}")
            counts.setdefault(key, Counter())[rec["status"]] += 1
        lines.append(f"study {name} ({store.root})")
        lines.append(f"  {'stage':<10} {'dataset/arch/method':<40} {'done':>5} {'run':>5} {'fail':>5} {'div':>5} {'miss':>5}")
        if plan["spec"].get("sequential"):  # seeds in rounds: only what open verdicts need is planned
            from .rounds import planned_final
            plan["planned"]["final"] = planned_final(store.root, plan["spec"], name)
        planned_by_stage = dict(plan["planned"])
        spec = plan.get("spec") or {}
        if spec.get("final_seeds") is not None and not spec.get("sequential"):  # final cells per distribution
            planned_by_stage["final"] = {
                f"{ds['name']}/{arch}/{m['name']}" + (f"[{dist}]" if dist else ""): len(spec["final_seeds"])
                for ds in spec["datasets"] for arch in spec.get("archs", ["hps"])
                for m in spec["methods"] for dist in (m.get("distributions") or [None])}
        keys = [(st, k) for st, d in planned_by_stage.items() for k in d]
        keys += sorted(k for k in counts if k not in set(keys))
        for stage, key in keys:
            c = counts.get((stage, key), Counter())
            planned = planned_by_stage.get(stage, {}).get(key, 0)
            present = sum(c.values())
            lines.append(f"  {stage:<10} {key:<40} {c['completed']:>5} {c['running']:>5} {c['failed']:>5} "
                         f"{c['diverged']:>5} {max(0, planned - present):>5}")
        if plan["spec"].get("sequential"):
            from .rounds import status_lines
            lines += status_lines(store.root, plan["spec"], name)
    from analysis.files import sources

    shadowed = sources(store.root, "trials").shadowed
    if shadowed:
        lines.append(f"note: {len(shadowed)} trial(s) have both compacted and per-trial files; each is counted once "
                     f"(from its per-trial files); `litmus compact {store.root}` merges them")
    return "\n".join(lines)


def cmd_compact(args: argparse.Namespace) -> int:
    from .compact import compact
    from .lock import StoreLock
    from .store import Store

    store = Store(args.store, create=False)
    with StoreLock(store.root, eprint, command="litmus compact"):  # never while a driver writes the store
        done = compact(store)
    print(f"{store.root}: {done.trials} finished trials compacted ({done.files} per-trial files merged), "
          f"generation {done.generation}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(status_table(Path(args.store), args.study))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `litmus` command")
