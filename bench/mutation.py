"""Mutation testing of the modules where a silent bug changes a conclusion (mutmut 3; not in CI: slow).

    pip install -e '.[mutation]'
    python bench/mutation.py                          # every group, its deciding functions
    python bench/mutation.py --only verdict stats     # some groups
    python bench/mutation.py --only tuning --mutants 'study.tuning.x_best_params*'   # some functions
    python bench/mutation.py --only store --resume    # rerun only last run's survivors (tests changed)
    python bench/mutation.py --list

Each group is a few modules and the SMALL set of fast test files that guard them (never Ray, never a
slow test). For each group the working tree is copied to ``/tmp/litmus-mutation/<group>`` (without
.git), the group's modules are set as mutmut's ``source_paths`` and its test files as the test
selection (``-m "not slow" -x``), and ``mutmut run`` mutates the group's deciding functions (all
functions of a small module; ``--all-functions`` for every function of every module) and runs, per
mutant, only the tests that called the mutated function (a fork per mutant). A mutant is stopped
after ``(its tests' time + 1 s) x timeout-multiplier x 2`` seconds and counted killed (timeout).

The script prints, per module: mutants, killed, survived, no tests, timeouts, the survivors judged
equivalent (:data:`EQUIVALENT`: a function, the text of the mutated line, and why no behaviour of
litmus changes) and the score ``killed / (killed + survived + no tests - equivalent)``, then every
other survivor with its diff (``mutmut show``). docs/testing.md keeps the scores and the judgements.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path("/tmp/litmus-mutation")
PACKAGES = ["trainables", "study", "analysis", "litmus"]


@dataclass(frozen=True)
class Group:
    modules: list[str]
    tests: list[str]
    #: mutant name patterns (fnmatch) of the functions that decide an outcome; empty: every function
    functions: list[str] = field(default_factory=list)
    #: where mutmut forks each mutant's process from: "fork" (its main process, which has run the tests once:
    #: fastest) or "forkserver" (a clean server process: for tests that train, since a fork of a process whose
    #: torch thread pools have run can hang in the child; docs/testing.md)
    isolation: str = "fork"
    #: the least timeout multiplier for the group: a forkserver worker imports pytest and torch afresh, time that
    #: mutmut's estimate (the tests' own durations) leaves out
    min_timeout_multiplier: float = 0.0


def _fn(module: str, *names: str) -> list[str]:
    """Patterns of ``module``'s functions (``name``) and methods (``Class.method``, ``Class.*``)."""
    out = []
    for n in names:
        cls, _, meth = n.rpartition(".")
        out.append(f"{module}.xǁ{cls}ǁ{meth}__mutmut_*" if cls else f"{module}.x_{n}__mutmut_*")
    return out


#: every module of trainables/weighting/ but its package __init__ (the registry, the shared contract code and
#: each method); the group is large (about 3,000 mutants): run it with --sample
WEIGHTING = sorted(p.stem for p in (ROOT / "trainables" / "weighting").glob("*.py") if p.stem != "__init__")

GROUPS: dict[str, Group] = {
    "verdict": Group(["analysis/verdict.py"],
                     ["tests/test_fairness_verdicts.py", "tests/test_mutants_verdict.py",
                      "tests/test_analysis_tuning.py::test_replicates_are_read_from_the_trials_table_and_tested_on"
                      "_replicate_means"]),
    "stats": Group(["analysis/stats.py"], ["tests/test_fairness_verdicts.py", "tests/test_analysis_stats.py",
                                           "tests/test_mutants_stats.py"]),
    "delta_m": Group(["analysis/delta_m.py"], ["tests/test_analysis_core.py", "tests/test_mutants_delta_m.py"]),
    "select": Group(["analysis/select.py"],
                    ["tests/test_analysis_core.py", "tests/test_mutants_select.py",
                     "tests/test_store_scale.py::test_columnar_selection_equals_in_memory_selection"],
                    _fn("analysis.select", "usable", "_last_epoch_rows", "validation_reference", "validation_scores",
                        "best_val_epochs", "select", "_pick_stage", "_store_selection")),
    "store": Group(["study/store.py"],
                   ["tests/test_fairness_store.py", "tests/test_mutants_store.py",
                    "tests/test_store_scale.py::test_parts_are_appended_and_a_restarted_trial_replaces_its_epochs",
                    "tests/test_store_scale.py::test_a_rerun_trial_after_compaction_replaces_its_compacted_copy"],
                   _fn("study.store", "_atomic_write", "_max_epoch", "Store.__init__", "Store._check_id", "Store.parts",
                       "Store._append", "Store.write_metrics", "Store.write_trial", "Store.write_weights",
                       "Store.trial_metrics", "Store.stored_epochs", "Store.trial_weights", "Store._trial_table_once",
                       "Store._trials_once", "Store.statuses")),
    "tuning": Group(["study/tuning.py"], ["tests/test_fairness_tuning.py", "tests/test_mutants_tuning.py",
                                          "tests/test_study_tuning.py"],
                    _fn("study.tuning", "study_name", "reference_key", "score", "epoch_rows", "reference_values",
                        "stored_outcome", "stored_scores", "TuningSource.*", "_best", "best_params")),
    "tune": Group(["trainables/tune.py"], ["tests/test_mutants_tune.py"], isolation="forkserver",
                  min_timeout_multiplier=10.0),
    "driver": Group(["study/driver.py", "study/final.py", "study/recorder.py"], ["tests/test_mutants_driver.py"],
                    _fn("study.driver", "concurrency", "outcome_of", "latest_checkpoint", "_searcher",
                        "_store_writer", "no_space", "run_jobs", "_scheduler", "_early_stopper")
                    + _fn("study.final", "pending", "ListSource.*") + _fn("study.recorder", "TrialRecorder.*")),
    "weighting": Group([f"trainables/weighting/{m}.py" for m in WEIGHTING],
                       ["tests/test_loss_methods.py", "tests/test_grad_methods.py", "tests/test_grad_properties.py",
                        "tests/test_methods_extra.py", "tests/test_mutants_weighting.py"]),
}

# Survivors judged equivalent (no behaviour of litmus changes), by function pattern and the text of the
# mutated line (the diff's "+" line, stripped); the reason goes to the report and docs/testing.md.
EQUIVALENT: list[tuple[str, str, str]] = [
    ("study.tuning.x_stored_outcome__mutmut_*", "return Outcome(None)",
     "_maybe_tell tells FAIL for any status other than completed, None included"),
    ("analysis.delta_m.x_metric_weights__mutmut_*",
     'm.loc[g.index, "w"] = task_weights(g["task"].astype(str).to_numpy(), g["higher_is_better"].to_numpy(None), per)',
     "task_weights converts the directions with np.asarray(..., bool) itself"),
    ("analysis.delta_m.x_delta_m__mutmut_*",
     'out = info.merge(point, how="left").merge(_cell_intervals(ps, confidence, baseline_arch), on=CELL,',
     "point holds CELL and delta_m only: without on= pandas merges on the common columns, which are CELL"),
    ("study.store.xǁStoreǁ_append__mutmut_*", "path.unlink(missing_ok=None)",
     "the parts were listed just before by the store's single writer: the file exists, missing_ok is never used"),
    ("study.store.xǁStoreǁ_append__mutmut_*", "old = self._compacted_rows(kind, trial_id, None)",
     "without a schema the compacted files' own (the store's) schema is read, and the rows are cast to it next"),
    ("study.store.xǁStoreǁwrite_metrics__mutmut_*", 'cols["XXstageXX"] = [str(group["stage"])] * len(ordered)',
     "GROUP_COLUMNS already fills 'stage' from the group (a str or a StrEnum, stored by pyarrow as its text)"),
    ("analysis.stats.x_pair_arrays__mutmut_*", "g = v.groupby(keys, observed=None, sort=True).agg(",
     "long_values casts the grouping columns to plain strings (and a bool): observed acts on categoricals only"),
    ("study.driver.x_concurrency__mutmut_*", 'if spec.resources.get("gpu", 1) > 0:',
     "a parsed spec's resources always hold 'gpu' (study/spec.py fills 0): the default is never used"),
    ("study.driver.x__scheduler__mutmut_*", "return super().on_trial_result(None, trial, result)",
     "Ray's ASHAScheduler.on_trial_result never reads its tune_controller argument"),
    ("study.driver.x__scheduler__mutmut_*", "super().on_trial_complete(None, trial,",
     "Ray's ASHAScheduler.on_trial_complete never reads its tune_controller argument"),
    ("study.driver.x_run_jobs__mutmut_*", 'if "://" not in storage and getattr(source, "finished", None):',
     "the default None is as falsy as False: a source without 'finished' never triggers the cleanup"),
    ("analysis.select.x_validation_scores__mutmut_*", "ref = ref.merge(w, on=None)",
     "ref holds dataset, task, metric, ref and metric_weights dataset, task, metric, w: without on= pandas merges "
     "on the common columns, the same three"),
    ("analysis.select.x_validation_scores__mutmut_*", "need = score[\"dataset\"].map(k).to_numpy(None)",
     "need is compared with == to integer counts: the same result as int64 or as float64 (a NaN of a dataset "
     "without reference makes it float either way)"),
    ("analysis.select.x__store_selection__mutmut_*", "dirs = dirs.assign(n=[0 if pd.isna(a) else 3 if (a and not b) else 1",
     "n is only compared with > 1: 2 and 3 both mark the conflicting directions"),
    ("analysis.select.x__store_selection__mutmut_*",
     '"uses the mean of all trials\' last validation epoch as reference", )',
     "stacklevel 2 points at store_selection, in the same module: the warning's text, category and module "
     "(what filters match) are unchanged, only its line number"),
    ("analysis.select.x__store_selection__mutmut_*",
     'selected = selected.sort_values(["trial_id", "task", "metric"], kind="STABLE").reset_index(drop=True)',
     "pandas ignores kind when sorting on several columns (lexsort), and trial x task x metric is unique in "
     "the selected rows"),
    ("analysis.select.x_best_val_epochs__mutmut_*", 'score = score.merge(candidates, on=None, how="inner")',
     "candidates are (trial_id, epoch) pairs: the common columns with the scores are exactly the two keys"),
    ("analysis.select.x_validation_scores__mutmut_*",
     'score = v.groupby(["trial_id", "epoch"], )["term"].agg(["sum", "count"]).reset_index()',
     "pandas 3 (installed: 3.1) defaults to observed=True; under pandas 2 the unobserved trial categories would "
     "add rows, which tests/test_mutants_select.py's categorical test would catch"),
    ("analysis.select.x_select__mutmut_*", 'chosen = rows.merge(best[["trial_id", "epoch"]], on=None, how="inner")',
     "best[['trial_id', 'epoch']] has only the two keys, both in rows: pandas merges on the same columns"),
    ("analysis.select.x__store_selection__mutmut_*",
     '+ ", ".join("/".join(map(str, r)) for r in bad[["dataset", "task", "metric"]].head(3).itertuples(index=None)))',
     "itertuples(index=None): None is as falsy as False, no index in the tuples"),
    ("analysis.select.x__store_selection__mutmut_*",
     'best = best.merge(usable_ids[["trial_id", "variant"]], on=None)  # usable trials only',
     "best holds trial_id and epoch only (BEST_SQL, or built from usable_ids): trial_id is the one common column"),
    ("analysis.select.x__store_selection__mutmut_*",
     'best = pd.concat([best[~best["trial_id"].isin(gap["trial_id"])], again], )',
     "after this, best is only counted (len(best) for the 'left out' warning): its index is never read"),
    ("analysis.select.x__store_selection__mutmut_*", "trials = load_trials(store, stage=stage)",
     "a trial id hashes the study's name (docs/store.md): other studies' records never share an id, so the "
     "status looked up per trial id is the same (more rows are read, nothing else)"),
    ("analysis.verdict.x__summaries__mutmut_*", 'X = np.array(d.loc[idx, "x"].tolist(), None)',
     "inference.t_summary casts X with np.asarray(x, float) itself (and the lists hold float Delta-m values)"),
    ("analysis.verdict.x_verdicts__mutmut_*",
     'd["sd_diff"] = [float(np.std(np.subtract(x, y), ddof=1)) if p and len(x) >= 1 else np.nan',
     "a paired row has at least 2 aligned pairs (pair_arrays pairs only on 2 or more common units), so "
     "len(x) > 1 whenever p"),
    ("trainables.weighting.base.xǁGradientMethodǁcheck__mutmut_*", "super().check(arch, None, multi_input)",
     "Method.check reads space for no method: it checks single_task only"),
    ("trainables.weighting.base.xǁGradientMethodǁcheck__mutmut_*", "super().check(space, multi_input)",
     "Method.check reads arch only when single_task, and no gradient method is single_task (only STL, a loss "
     "weighting)"),
    ("trainables.weighting.igb_v2.xǁIGBv2ǁ__init____mutmut_*",
     'self._prev: tuple[Tensor, Tensor] | None = ""  # (losses, weights) of the previous step',
     "_prev is read only once base is set (end of epoch 1), after the first weights() call has set it to a tuple; "
     "a checkpoint restores it as saved"),
    ("trainables.weighting.igb_v2.xǁIGBv2ǁweights__mutmut_*",
     "if self.epochs_done >= self.update_after and self.step % self.update_every == 0 and self.buffer.size >= 0:",
     "epochs_done >= update_after >= 1 means base and _prev are set, so the transition added just above makes "
     "the buffer non-empty: size > 0 and size >= 0 agree"),
    ("trainables.weighting.igb_v2.xǁIGBv2ǁweights__mutmut_*",
     "return (w.to(losses.device) / losses.detach().clamp_min(1e-12)).to(None)",
     "w is float32 (the SAC actor, or sample()) and the losses float32 or float64 (autocast computes losses in "
     "float32): the division already gives the losses' dtype"),
    ("trainables.weighting.sampling.x__dirichlet__mutmut_*",
     "e = +torch.log1p(-torch.rand(t, generator=g, dtype=torch.float64))",
     "only e / e.sum() is returned: negating every e leaves the ratio unchanged"),
    ("study.tuning.xǁTuningSourceǁ__init____mutmut_*", "index -= 1",
     "entry['index'] is only a key of the study in self.outcomes: 0, -1, -2 ... are as distinct as 0, 1, 2"),
    ("study.tuning.xǁTuningSourceǁ_ask__mutmut_*", "waiting = None",
     "waiting is only read by 'wait' if waiting else 'done': None is as falsy as False"),
]


def _config(group: Group, timeout_multiplier: float) -> str:
    toml_list = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list(group.modules)}\n"
        f"also_copy = {toml_list(PACKAGES)}\n"
        f"pytest_add_cli_args = {toml_list(['-m', 'not slow', '-p', 'no:cacheprovider', '-q', '-x', '-n', '0'])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(group.tests)}\n"
        f"process_isolation = {json.dumps(group.isolation)}\n"
        "use_git_change_detection = false\n"
        f"timeout_multiplier = {max(timeout_multiplier, group.min_timeout_multiplier)}\n"
        "timeout_constant = 1.0\n"
    )


def without_mutmut_table(text: str) -> str:
    """pyproject.toml without its ``[tool.mutmut]`` table (the group's config replaces the default)."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skip = line.strip() == "[tool.mutmut]"
        if not skip:
            out.append(line)
    return "".join(out)


IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "mutants", "litmus-results", ".pytest_cache")


def prepare(name: str, group: Group, timeout_multiplier: float, resume: bool) -> Path:
    """The scratch copy; with ``resume`` mutmut's state (``mutants/``) is kept and the tree copied over it."""
    dest = SCRATCH / name
    if dest.exists() and not resume:
        shutil.rmtree(dest)
    shutil.copytree(ROOT, dest, ignore=IGNORE, dirs_exist_ok=True)
    missing = [t for t in group.tests if not (dest / t.split("::")[0]).exists()]
    if missing:
        raise SystemExit(f"{name}: test files missing: {', '.join(missing)}")
    py = dest / "pyproject.toml"
    py.write_text(without_mutmut_table(py.read_text()) + _config(group, timeout_multiplier))
    return dest


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # mutmut puts mutants/ first; the original tree must not be importable
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LITMUS_FLUSH_SECONDS="0")
    return env


def _mutmut(dest: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=dest, env=_env(), capture_output=True,
                          text=True)


def _statuses(dest: Path) -> dict[str, str]:
    res = _mutmut(dest, "results", "--all", "true")
    out = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+): (.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _added_line(diff: str) -> str:
    added = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return added[0] if added else ""


def equivalent_reason(name: str, diff: str) -> str | None:
    line = _added_line(diff)
    for pattern, text, reason in EQUIVALENT:
        if fnmatch.fnmatch(name, pattern) and line == text:
            return reason
    return None


def all_mutants(dest: Path) -> list[str]:
    """Every mutant mutmut generated in the scratch copy (from its ``.meta`` files)."""
    names = []
    for meta in sorted((dest / "mutants").rglob("*.py.meta")):
        names += sorted(json.loads(meta.read_text())["exit_code_by_key"])
    return names


def sample_mutants(dest: Path, patterns: list[str], n: int, seed: int) -> tuple[list[str], int]:
    """Generate the mutants and collect mutmut's test coverage (a run that selects no mutant stops there), then a
    seeded random sample of ``n`` of those matching ``patterns``; returns (sample, number matching)."""
    _mutmut(dest, "run", "--max-children", "1", "litmus-select-nothing")
    names = [m for m in all_mutants(dest) if not patterns or any(fnmatch.fnmatch(m, p) for p in patterns)]
    if len(names) <= n:
        return names, len(names)
    return sorted(random.Random(seed).sample(names, n)), len(names)


def run(name: str, group: Group, max_children: int, mutants: list[str] | None, timeout_multiplier: float,
        resume: bool, sample: int | None = None, seed: int = 0, retry_timeouts: bool = False) -> dict:
    dest = prepare(name, group, timeout_multiplier, resume)
    patterns = mutants or group.functions
    population = None
    if sample and not resume:
        patterns, population = sample_mutants(dest, patterns, sample, seed)
        (dest / "sample.json").write_text(json.dumps({"seed": seed, "population": population, "sample": patterns}))
    if resume:
        before = _statuses(dest)
        rerun = ("survived", "no tests") + (("timeout",) if retry_timeouts else ())
        patterns = [m for m, s in before.items() if s in rerun
                    and (not patterns or any(fnmatch.fnmatch(m, p) for p in patterns))]
        if not patterns:
            print(f"{name}: no survivors to rerun")
    t0 = time.time()
    proc = _mutmut(dest, "run", "--max-children", str(max_children), *patterns) if patterns or not resume else None
    seconds = time.time() - t0
    if proc is not None:
        (dest / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
    statuses = _statuses(dest)
    selected = group.functions if not mutants else mutants
    if (dest / "sample.json").exists():
        info = json.loads((dest / "sample.json").read_text())
        selected, population = info["sample"], info["population"]
    per_module: dict[str, dict[str, int]] = {}
    survivors: dict[str, str] = {}
    equivalent: dict[str, str] = {}
    for mname, status in statuses.items():
        if status == "not checked" or (selected and not any(fnmatch.fnmatch(mname, p) for p in selected)):
            continue
        module = mname.split(".x_")[0].split(".xǁ")[0]
        counts = per_module.setdefault(module, {})
        counts[status] = counts.get(status, 0) + 1
        if status in ("survived", "no tests"):
            diff = _mutmut(dest, "show", mname).stdout.strip()
            reason = equivalent_reason(mname, diff)
            if reason:
                equivalent[mname] = reason
                counts["equivalent"] = counts.get("equivalent", 0) + 1
            else:
                survivors[mname] = diff
    return {"group": name, "seconds": seconds, "per_module": per_module, "survivors": survivors,
            "population": population,
            "equivalent": equivalent, "returncode": proc.returncode if proc else 0,
            "log": str(dest / "mutmut-run.log")}


def score(counts: dict[str, int]) -> float:
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
    alive = counts.get("survived", 0) + counts.get("no tests", 0) - counts.get("equivalent", 0)
    return killed / (killed + alive) if killed + alive else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help=f"groups (default: all of {', '.join(GROUPS)})")
    ap.add_argument("--max-children", type=int, default=2, help="parallel mutant runs (default 2)")
    ap.add_argument("--mutants", nargs="*", help="mutant name patterns (fnmatch), e.g. 'study.tuning.x_best_params*'")
    ap.add_argument("--all-functions", action="store_true", help="every function of the group's modules")
    ap.add_argument("--timeout-multiplier", type=float, default=5.0,
                    help="a mutant is stopped after (tests' time + 1 s) x this x 2 seconds (default 5)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the scratch copy's mutmut state; rerun only its survivors (after adding tests)")
    ap.add_argument("--retry-timeouts", action="store_true",
                    help="with --resume, also rerun the mutants stopped by the timeout (under load a slow test run "
                         "is stopped as a timeout and counted killed; rerun them with a larger multiplier)")
    ap.add_argument("--sample", type=int, help="run a seeded random sample of this many of the group's mutants")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for g, grp in GROUPS.items():
            print(f"{g:10s} {' '.join(grp.modules)}\n{'':10s} <- {' '.join(grp.tests)}\n{'':10s} functions: "
                  f"{' '.join(grp.functions) or 'all'}")
        return 0
    unknown = sorted(set(args.only or []) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown group(s) {', '.join(unknown)}; valid: {', '.join(GROUPS)}")
    results = []
    for name in args.only or list(GROUPS):
        group = GROUPS[name]
        if args.all_functions:
            group = Group(group.modules, group.tests)
        r = run(name, group, args.max_children, args.mutants, args.timeout_multiplier, args.resume, args.sample,
                args.seed, args.retry_timeouts)
        results.append(r)
        print(f"\n== {name} ({r['seconds']:.0f} s; log {r['log']}) {time.strftime('%Y-%m-%d %H:%M')}")
        if r["population"]:
            print(f"a random sample (seed {args.seed}) of the {r['population']} mutants of its functions")
        print(f"{'module':30s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} {'no tests':>8s} "
              f"{'equiv':>5s} {'score':>6s}")
        for module, c in sorted(r["per_module"].items()):
            total = sum(v for k, v in c.items() if k != "equivalent")
            print(f"{module:30s} {total:7d} {c.get('killed', 0):6d} {c.get('timeout', 0):7d} "
                  f"{c.get('survived', 0):8d} {c.get('no tests', 0):8d} {c.get('equivalent', 0):5d} {score(c):6.1%}")
        for mname, reason in r["equivalent"].items():
            print(f"   equivalent: {mname}: {reason}")
        for mname, diff in r["survivors"].items():
            print(f"\n-- surviving: {mname}\n{diff}")
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
