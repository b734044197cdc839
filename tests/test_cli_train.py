"""`litmus train`, `methods`, `datasets`: a training run and a bad input through the real console entry point
(a fresh process: its output is exactly what a user sees); the other cases call the same ``main`` in-process
(each fresh process costs the imports, ~5-8 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from study.cli import main

LITMUS = [sys.executable, "-m", "study.cli"]


def litmus(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(LITMUS + list(args), capture_output=True, text=True, timeout=300)


def test_train_writes_single_stage_rows(tmp_path: Path) -> None:
    store = tmp_path / "store"
    r = litmus("train", "--dataset", "multi_digits", "--method", "rlw", "--distribution", "normal", "--seed", "0",
               "--epochs", "2", "--option", "n_train=256", "--option", "n_val=64", "--option", "n_test=64",
               "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert "epoch 2/2" in r.stderr and "accuracy" in r.stdout
    metrics = pq.read_table(store / "metrics").to_pandas()
    # 2 epochs x 3 splits x 2 tasks x (loss, accuracy)
    assert len(metrics) == 2 * 3 * 2 * 2
    assert set(metrics["stage"]) == {"single"} and set(metrics["distribution"]) == {"normal"}
    assert not metrics.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()
    trials = pq.read_table(store / "trials").to_pandas()
    assert list(trials["status"]) == ["completed"] and trials["step_time_ms"].iloc[0] > 0
    assert '"torch"' in trials["versions"].iloc[0]
    weights = pq.read_table(store / "weights").to_pandas()
    assert len(weights) == 2 * 2


def test_diverged_run_is_recorded(tmp_path: Path) -> None:
    store = tmp_path / "s"
    rc = main(["train", "--dataset", "multi_digits", "--lr", "1e30", "--optimizer", "sgd", "--epochs", "2",
               "--batch-size", "32", "--option", "n_train=256", "--store", str(store)])
    assert rc == 1
    trials = pq.read_table(store / "trials").to_pandas()
    err = trials["error"].iloc[0]  # lr 1e30: the loss explodes (divergence rule) or turns non-finite
    assert list(trials["status"]) == ["diverged"] and ("non-finite" in err or "x its first-step loss" in err)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--dataset", "nope"], "unknown dataset"),
        (["--dataset", "scenes", "--method", "nope"], "unknown method"),
        (["--dataset", "scenes", "--method", "rlw", "--distribution", "gauss"], "unknown distribution"),
        (["--dataset", "scenes", "--method", "rlw", "--param", "foo=1"], "unknown hyperparameter"),
        (["--dataset", "scenes", "--lr", "-1"], "lr"),
        (["--dataset", "scenes", "--epochs", "0"], "epochs"),
        (["--dataset", "scenes", "--store", "/proc/litmus-store"], "not writable"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], msg: str, capsys) -> None:
    assert main(["train", *args]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("litmus: error:") and msg in lines[0], err


def test_bad_input_from_a_fresh_process_is_one_line_and_exit_2() -> None:
    """Nothing else reaches the terminal (no import-time warning or traceback) before the error line."""
    r = litmus("train", "--dataset", "nope")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("litmus: error: unknown dataset 'nope'"), r.stderr


def test_methods_and_datasets_listings(capsys) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "rlw" in out and "distribution" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "multi_digits" in out and "hps" in out


def test_store_can_be_opened_by_many_processes_at_once(tmp_path: Path) -> None:
    """Opening a store probes that it is writable; concurrent openers must not trip over each other's probe."""
    from concurrent.futures import ThreadPoolExecutor

    from study.store import Store

    with ThreadPoolExecutor(8) as pool:
        roots = list(pool.map(lambda _: Store(tmp_path / "s").root, range(400)))
    assert len(set(roots)) == 1
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".write-probe")]
