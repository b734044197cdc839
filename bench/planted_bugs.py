"""Plant the fairness bugs of issue 18 one at a time in a scratch copy and check the fast suite catches each.

    python bench/planted_bugs.py                 # every bug, the whole fast suite (-m "not slow", -x)
    python bench/planted_bugs.py --only tuning_min graddrop_sign
    python bench/planted_bugs.py --tests tests/test_fairness_tuning.py   # a quicker check with some files
    python bench/planted_bugs.py --list

Each bug is an exact source edit (the old text must occur exactly once, so a refactor that moves
the code makes the script fail loudly instead of planting nothing). The working tree is copied to
``/tmp/litmus-planted/<bug>`` (without .git), the edit applied there, and pytest run in the copy with
``-m "not slow" -x``: the bug's own test file first (where it is expected to show, for a quick answer),
then the fairness tests, then the rest of ``tests/`` (the whole fast suite). A bug is *caught* when
pytest fails; the first failing test is printed. Not run in CI: one fast-suite run per bug.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path("/tmp/litmus-planted")
FIRST = ["tests/test_mutants_driver.py", "tests/test_fairness_tuning.py", "tests/test_fairness_verdicts.py",
         "tests/test_fairness_store.py", "tests/test_grad_methods.py", "tests/test_fairness_ray.py"]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    path: str
    old: str
    new: str
    #: test files run first (where the bug is expected to show: a quicker answer); the rest of the fast suite follows
    first: tuple[str, ...] = ()


BUGS = [
    Bug("rlw_not_scaled", "RLW weights not scaled by T", "trainables/weighting/sampling.py",
        "return sampler(num_tasks, generator, torch.device(device)) * num_tasks",
        "return sampler(num_tasks, generator, torch.device(device))",
        first=("tests/test_mutants_weighting.py",)),
    Bug("tuning_min", "tuning keeps the worst Optuna trial (max -> min)", "study/tuning.py",
        "best = max(complete, key=lambda t: (t.value, -t.number))", "best = min(complete, key=lambda t: (t.value, -t.number))",
        first=("tests/test_fairness_tuning.py",)),
    Bug("objective_on_test", "the tuning objective read on the test split", "study/tuning.py",
        'def score(rows: list[dict[str, Any]], reference: dict[str, float], split: str = "val") -> float:',
        'def score(rows: list[dict[str, Any]], reference: dict[str, float], split: str = "test") -> float:',
        first=("tests/test_mutants_tuning.py",)),
    Bug("never_paired", "comparisons on shared seeds never paired", "analysis/stats.py",
        "        if len(ax) >= 2:\n            xs.append(ax)", "        if False:\n            xs.append(ax)",
        first=("tests/test_mutants_stats.py",)),
    Bug("worse_called_better", "a worse method labelled 'better'", "analysis/verdict.py",
        'return ("better" if better else "worse")', 'return ("better" if (better or worse) else "worse")',
        first=("tests/test_mutants_verdict.py",)),
    Bug("negligible_not_equivalent", "a significant-but-negligible difference not called 'equivalent'",
        "analysis/verdict.py", "if (better or worse) and not equivalent:", "if better or worse:",
        first=("tests/test_mutants_verdict.py",)),
    Bug("store_duplicates", "the store keeps duplicate metric rows", "study/store.py",
        "merged[tuple(r[k] for k in KEY)] = r", "merged[(len(merged),) + tuple(r[k] for k in KEY)] = r",
        first=("tests/test_fairness_store.py",)),
    Bug("store_not_atomic", "a non-atomic store write", "study/store.py",
        "pq.write_table(table, tmp, compression=\"zstd\")\n        os.replace(tmp, path)",
        "pq.write_table(table, path, compression=\"zstd\")",
        first=("tests/test_fairness_store.py",)),
    Bug("gpu_share_ignored", "the GPU share ignored when packing concurrent trials", "study/driver.py",
        'trainable = tune.with_resources(train_trial, {"cpu": spec.resources["cpu"], "gpu": spec.resources.get("gpu", 0)})',
        'trainable = tune.with_resources(train_trial, {"cpu": spec.resources["cpu"], "gpu": 0})',
        first=("tests/test_mutants_driver.py",)),
    Bug("concurrency_ignores_gpu", "concurrency computed from CPUs only", "study/driver.py",
        'n = min(n, int(resources.get("GPU", 0) // spec.resources["gpu"]))', "n = n",
        first=("tests/test_mutants_driver.py",)),
    Bug("final_reruns_completed", "the final stage re-running completed trials", "study/final.py",
        "if j.trial_id in seen or st == Status.COMPLETED or (st in FINISHED and not retry_failed):",
        "if j.trial_id in seen:",
        first=("tests/test_mutants_driver.py",)),
    Bug("graddrop_sign", "GradDrop ignoring the activation's sign", "trainables/weighting/graddrop.py",
        "signed = j if self.activation is None else j * torch.sign(self.activation.detach()).to(j.dtype)",
        "signed = j",
        first=("tests/test_grad_methods.py",)),
    Bug("graddrop_activation_unset", "GradDrop never keeps the representation the trainer hands it",
        "trainables/weighting/graddrop.py", "self.activation = rep.detach()", "self.activation = None",
        first=("tests/test_grad_methods.py",)),
]


def plant(bug: Bug, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "litmus-results",
                                                              "mutants", ".pytest_cache"))
    f = dest / bug.path
    text = f.read_text()
    if text.count(bug.old) != 1:
        raise SystemExit(f"{bug.name}: the text to replace occurs {text.count(bug.old)} times in {bug.path} "
                         "(the code moved: update the bug)")
    f.write_text(text.replace(bug.old, bug.new))


def _pytest(args: list[str], dest: Path, timeout: float) -> tuple[str, int]:
    env = dict(os.environ, PYTHONPATH=str(dest))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider", *args]
    try:
        proc = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout)
        return proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        return "timeout", -1


def run(bug: Bug, tests: list[str], timeout: float) -> tuple[bool, str, float]:
    """Plant ``bug``, then run its own files and the fairness files (listed files keep their order), then, if
    all pass, the rest of ``tests`` (pytest orders a directory's files itself, so a directory comes last)."""
    dest = SCRATCH / bug.name
    plant(bug, dest)
    files = [t for t in [*bug.first, *tests] if t.endswith(".py")]
    files = list(dict.fromkeys(files))
    dirs = [t for t in tests if not t.endswith(".py")]
    t0 = time.time()
    out, rc = _pytest(files, dest, timeout) if files else ("", 5)
    if rc in (0, 5) and dirs:
        out, rc = _pytest([*dirs, *[f"--ignore={f}" for f in files]], dest, timeout)
    seconds = time.time() - t0
    failed = re.findall(r"^FAILED (\S+)", out, flags=re.M) or re.findall(r"^ERROR (\S+)", out, flags=re.M)
    why = re.findall(r"^E +(.+)$", out, flags=re.M)  # the assertion that failed: tell a catch from a crash
    shutil.rmtree(dest, ignore_errors=True)
    caught = rc not in (0, 5, -1)
    first = failed[0] if failed else out.strip().splitlines()[-1] if out.strip() else ""
    return caught, first + (f"  [{why[0][:100]}]" if why else ""), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="bug names (default: all)")
    ap.add_argument("--tests", nargs="*", help="test paths (default: the fairness tests first, then tests/)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for b in BUGS:
            print(f"{b.name:28s} {b.what}")
        return 0
    bugs = [b for b in BUGS if not args.only or b.name in args.only]
    tests = args.tests or [t for t in FIRST if (ROOT / t).exists()] + ["tests"]
    survived = 0
    print(f"{'bug':28s} {'result':9s} {'seconds':>7s}  first failing test")
    for b in bugs:
        caught, first, secs = run(b, tests, args.timeout)
        survived += not caught
        print(f"{b.name:28s} {'caught' if caught else 'SURVIVED':9s} {secs:7.0f}  {first}", flush=True)
    print(f"{len(bugs) - survived}/{len(bugs)} planted bugs caught by pytest -m 'not slow' {' '.join(tests)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
