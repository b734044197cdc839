"""Mutation testing of the modules where a silent bug changes a conclusion (mutmut 3; not in CI: slow).

    pip install -e '.[mutation]'
    python bench/mutation.py                          # every group below
    python bench/mutation.py --only verdict stats     # some groups
    python bench/mutation.py --list

For each group the working tree is copied to ``/tmp/litmus-mutation/<group>`` (without .git), the
group's modules are set as mutmut's ``source_paths`` and its fast tests (``-m "not slow"``, no Ray) as
the test selection, and ``mutmut run`` mutates every function and runs the tests that cover it (a
fork per mutant from
the process that collected the coverage; mutmut's fork server restarted again and again here). The script prints, per module: mutants, killed,
survived, no tests, timeouts and the score ``killed / (killed + survived + no tests)``, then every
surviving mutant with its diff (``mutmut show``). Which survivors are equivalent mutants is judged by
hand in docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path("/tmp/litmus-mutation")

# group -> (modules to mutate, tests that guard them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "verdict": (["analysis/verdict.py"], ["tests/test_fairness_verdicts.py"]),
    "stats": (["analysis/stats.py"], ["tests/test_fairness_verdicts.py", "tests/test_analysis_stats.py",
                                      "tests/test_analysis_core.py"]),
    "delta_m": (["analysis/delta_m.py"], ["tests/test_analysis_core.py", "tests/test_analysis_stats.py",
                                          "tests/test_fairness_verdicts.py"]),
    "select": (["analysis/select.py"], ["tests/test_analysis_core.py", "tests/test_analysis_stats.py"]),
    "store": (["study/store.py"], ["tests/test_fairness_store.py", "tests/test_fairness_tuning.py"]),
    "tuning": (["study/tuning.py"], ["tests/test_fairness_tuning.py", "tests/test_study_tuning.py"]),
    "tune": (["trainables/tune.py"], ["tests/test_fairness_tuning.py"]),
    "driver": (["study/driver.py"], ["tests/test_fairness_tuning.py", "tests/test_fairness_driver.py"]),
    "weighting": (["trainables/weighting/"], ["tests/test_loss_methods.py", "tests/test_grad_methods.py",
                                              "tests/test_grad_properties.py", "tests/test_methods_extra.py"]),
}
PACKAGES = ["trainables", "study", "analysis"]


def _config(modules: list[str], tests: list[str]) -> str:
    toml_list = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list(modules)}\n"
        f"also_copy = {toml_list(PACKAGES)}\n"
        f"pytest_add_cli_args = {toml_list(['-m', 'not slow', '-p', 'no:cacheprovider', '-q', '-x'])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'process_isolation = "fork"\n'
        "use_git_change_detection = false\n"
        "timeout_multiplier = 5.0\n"
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


def prepare(group: str) -> Path:
    modules, tests = GROUPS[group]
    dest = SCRATCH / group
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "mutants",
                                                              "litmus-results", ".pytest_cache"))
    py = dest / "pyproject.toml"
    py.write_text(without_mutmut_table(py.read_text()) + _config(modules, [t for t in tests if (dest / t).exists()]))
    return dest


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # mutmut puts mutants/ first; the original tree must not be importable
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run(group: str, max_children: int, mutants: list[str] | None = None) -> dict:
    dest = prepare(group)
    t0 = time.time()
    mutmut = [sys.executable, "-m", "mutmut"]
    proc = subprocess.run([*mutmut, "run", "--max-children", str(max_children), *(mutants or [])], cwd=dest,
                          env=_env(), capture_output=True, text=True)
    seconds = time.time() - t0
    (dest / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
    res = subprocess.run([*mutmut, "results", "--all", "true"], cwd=dest, env=_env(), capture_output=True, text=True)
    per_module: dict[str, dict[str, int]] = {}
    survivors: list[str] = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+): (.+)$", line)
        if not m:
            continue
        name, status = m.group(1), m.group(2).strip()
        if status == "not checked":
            continue  # outside --mutants
        module = name.split(".x_")[0].split(".xǁ")[0]
        counts = per_module.setdefault(module, {})
        counts[status] = counts.get(status, 0) + 1
        if status in ("survived", "no tests"):
            survivors.append(name)
    diffs = {}
    for name in survivors:
        show = subprocess.run([*mutmut, "show", name], cwd=dest, env=_env(), capture_output=True, text=True)
        diffs[name] = show.stdout.strip()
    return {"group": group, "seconds": seconds, "per_module": per_module, "survivors": diffs,
            "returncode": proc.returncode, "log": str(dest / "mutmut-run.log")}


def score(counts: dict[str, int]) -> float:
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
    alive = counts.get("survived", 0) + counts.get("no tests", 0)
    return killed / (killed + alive) if killed + alive else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help=f"groups (default: all of {', '.join(GROUPS)})")
    ap.add_argument("--max-children", type=int, default=2, help="parallel mutant runs (default 2)")
    ap.add_argument("--mutants", nargs="*", help="mutant name patterns (fnmatch), e.g. 'study.tuning.x_best_params*'")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for g, (mods, tests) in GROUPS.items():
            print(f"{g:10s} {' '.join(mods):40s} <- {' '.join(tests)}")
        return 0
    results = []
    for group in args.only or list(GROUPS):
        r = run(group, args.max_children, args.mutants)
        results.append(r)
        print(f"\n== {group} ({r['seconds']:.0f} s; log {r['log']})")
        print(f"{'module':45s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} {'no tests':>8s} {'timeout':>7s} {'score':>6s}")
        for module, c in sorted(r["per_module"].items()):
            total = sum(c.values())
            print(f"{module:45s} {total:7d} {c.get('killed', 0):6d} {c.get('survived', 0):8d} "
                  f"{c.get('no tests', 0):8d} {c.get('timeout', 0):7d} {score(c):6.1%}")
        for name, diff in r["survivors"].items():
            print(f"\n-- surviving: {name}\n{diff}")
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
