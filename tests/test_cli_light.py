"""`litmus status` and the rerun of a finished study read the plan and the trials table only (issue 13):
no torch, no pandas/scipy/statsmodels in `litmus status`, no metrics read and no per-trial re-derivation of
the plan when a rerun finds the study finished."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from study import cli, plan
from study.compact import compact
from study.run import finished_study, run_study
from study.saved_plan import plan_path
from study.spec import parse
from study.store import Store

HEAVY = ("torch", "pandas", "scipy", "statsmodels", "pyarrow.dataset", "ray", "trainables.config")
TINY = {"n_train": 100, "n_val": 50, "n_test": 50, "width": 8}


def _spec(root: Path, seeds: int = 5, **extra):
    return parse({"name": "light", "store": str(root), "methods": ["ew", "rlw"],
                  "datasets": [{"name": "multi_digits", "options": TINY, "epochs": 1}],
                  "tuning": {"methods": "none"}, "final": {"seeds": seeds}, **extra})


def _finished_store(root: Path, statuses: dict[int, str] | None = None):
    """A store holding the saved plan of a 2-method x 5-seed study and one trial record per planned trial (the
    records the driver writes; statuses by index, completed by default). No metrics are written: the paths
    under test must not need them."""
    spec = _spec(root)
    store = Store(root)
    jobs = plan.final_jobs(spec, {})
    plan.save_plan(spec, store.root, [], jobs)
    for i, j in enumerate(jobs):
        c = j.config
        store.write_trial({"study": "light", "stage": "final", "trial_id": j.trial_id, "dataset": c["dataset"],
                           "arch": c["arch"], "method": c["method"], "distribution": c.get("distribution"),
                           "seed": c["seed"], "status": (statuses or {}).get(i, "completed"), "config": c,
                           "epochs": 1})
    return spec, store, jobs


def _status_in_subprocess(root: Path) -> tuple[str, list[str]]:
    code = ("import sys\nfrom study.cli import main\nrc = main(['status', sys.argv[1]])\n"
            f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules), rc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    table, loaded = out.stdout.rsplit("LOADED", 1)
    return table.rstrip("\n"), loaded.split()


EXPECTED = """study light ({root})
  stage      dataset/arch/method                       done   run  fail   div  miss
  final      multi_digits/hps/ew                          4     0     1     0     0
  final      multi_digits/hps/rlw[normal]                 3     1     0     0     1"""


def test_status_loads_neither_torch_nor_the_analysis_and_prints_the_counts(tmp_path):
    root = tmp_path / "store"
    _, store, jobs = _finished_store(root, statuses={1: "failed", 6: "running"})
    # the rlw trial of the last seed was never started: its record goes, so it counts as missing
    last = jobs[-1]
    assert last.config["method"] == "rlw"
    (root / "trials" / f"{last.trial_id}.parquet").unlink()
    expected = EXPECTED.format(root=store.root)
    table, loaded = _status_in_subprocess(root)
    assert table == expected
    assert loaded == ["[]", "0"]  # nothing heavy imported; exit code 0
    # after compaction (the finished trials' records merged into one file) the same table, still light
    done = compact(store)
    assert done.trials == 8 and len(list((root / "trials").iterdir())) == 1  # the running one stays
    table, loaded = _status_in_subprocess(root)
    assert table == expected and loaded == ["[]", "0"]


def test_the_command_table_matches_what_each_module_registers():
    import importlib

    for module, commands in cli.SUB_CLIS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert tuple(sub.choices) == commands, module
    # help lists every command (every module registered); a typo is told the full list of choices
    helped = subprocess.run([sys.executable, "-m", "study.cli", "--help"], capture_output=True, text=True)
    for commands in cli.SUB_CLIS.values():
        for c in commands:
            assert c in helped.stdout
    bad = subprocess.run([sys.executable, "-m", "study.cli", "stauts", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "report" in bad.stderr and "status" in bad.stderr


def test_rerun_of_a_finished_study_reads_the_plan_not_the_metrics(tmp_path, monkeypatch):
    spec, store, jobs = _finished_store(tmp_path / "store")
    made: list[str] = []
    original = plan.make_job

    def counted(*a, **k):
        job = original(*a, **k)
        made.append(job.trial_id)
        return job

    monkeypatch.setattr(plan, "make_job", counted)

    def no_ray(*a, **k):
        raise AssertionError("a finished study must not start Ray")

    monkeypatch.setattr("study.driver.connect", no_ray)
    before = plan_path(store.root, "light").read_bytes()
    said: list[str] = []
    res = run_study(spec, num_cpus=1, say=said.append)
    assert res.counts == {"completed": 10, "failed": 0, "diverged": 0, "missing": 0}
    assert said[0].endswith("every trial is in the store, nothing to run")
    assert "[final] 10/10 trials already in the store: skipped" in said
    assert len(made) == 2  # one id re-derived per cell (ew, rlw[normal]), not one per trial
    assert plan_path(store.root, "light").read_bytes() == before  # nothing rewritten
    assert not (store.root / "metrics").exists() or not any((store.root / "metrics").iterdir())


def test_a_changed_default_or_spec_or_an_unfinished_trial_takes_the_usual_path(tmp_path):
    spec, store, jobs = _finished_store(tmp_path / "store")
    assert finished_study(spec, store) == [j.trial_id for j in jobs]
    assert finished_study(_spec(store.root, seeds=6), store) is None  # one seed more: not the saved plan
    # the same spec file moved elsewhere is the same study
    moved = _spec(store.root)
    moved.source = "/elsewhere/light.yaml"
    assert finished_study(moved, store) == [j.trial_id for j in jobs]
    # ids planned under other defaults (a resolved config that differs: every id differs)
    path = plan_path(store.root, "light")
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(dict(saved, final_ids=[f"f{i:015x}" for i in range(len(jobs))])))
    assert finished_study(spec, store) is None
    path.write_text(json.dumps(saved))
    # a failed trial is finished unless --retry-failed
    store.write_trial({**store.trials("light")[3], "status": "failed"})
    assert finished_study(spec, store) is not None
    assert finished_study(spec, store, retry_failed=True) is None
    store.write_trial({**store.trials("light")[3], "status": "running"})
    assert finished_study(spec, store) is None


@pytest.mark.parametrize("argv,modules", [(["status", "x"], ["study.run_cli"]), (["report", "x"], ["analysis.cli"]),
                                          (["train", "--dataset", "d"], []), (["--help"], list(cli.SUB_CLIS))])
def test_only_the_commands_module_is_imported(argv, modules):
    assert cli._sub_clis_for(argv) == modules


def test_the_method_registry_loads_no_solver_library():
    """The rerun's spec check imports the method registry; torchjd (with cvxpy and scipy.stats) and
    scipy.optimize load only when a method that needs them is built, then they are there."""
    code = ("import sys\nimport trainables.weighting as w, trainables.config\n"
            "solvers = ('torchjd', 'cvxpy', 'scipy.stats', 'scipy.optimize')\n"
            "print(sorted(m for m in solvers if m in sys.modules))\n"
            "w.build('pcgrad', 2)\nprint('torchjd' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"
