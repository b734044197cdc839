"""``litmus fixed-weights`` refuses bad input with one error line and exit code 2 (README, docs/spec.md)."""

from __future__ import annotations

import pytest

from study.cli import main
from study.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    s.write_weights("s", "good", {1: {"a": 1.0, "b": 3.0}, 2: {"a": 2.0, "b": 2.0}})
    s.write_weights("s", "gap", {1: {"a": 1.0, "b": 1.0}, 3: {"a": 1.0, "b": 1.0}})
    s.write_weights("s", "tasks", {1: {"a": 1.0, "b": 1.0}, 2: {"a": 1.0, "c": 1.0}})
    s.write_weights("s", "negative", {1: {"a": -1.0, "b": 0.5}})
    s.write_weights("s", "nan", {1: {"a": float("nan"), "b": 1.0}})
    return s.root


@pytest.mark.parametrize("argv,message", [
    (["missing"], "trial 'missing' has no recorded weights"),
    (["gap"], "recorded weight epochs are not 1..2: [1, 3]"),
    (["tasks"], "epoch 2 has tasks ['a', 'c'], epoch 1 has ['a', 'b']"),
    (["negative"], "weights must be finite with a positive sum"),
    (["nan"], "weights must be finite with a positive sum"),
    (["good", "--beta", "1.0"], "beta must be in [0, 1), got 1.0"),
    (["good", "--beta", "-0.1"], "beta must be in [0, 1), got -0.1"),
])
def test_bad_input_is_one_error_line_and_exit_2(store, capsys, argv, message) -> None:
    assert main(["fixed-weights", str(store), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("litmus: error: ") and message in err and err.count("\n") == 1, err


def test_not_a_store_and_a_good_trial(tmp_path, store, capsys) -> None:
    (tmp_path / "plain").mkdir()
    assert main(["fixed-weights", str(tmp_path / "plain"), "good"]) == 2
    err = capsys.readouterr().err
    assert "is not a litmus store" in err and err.count("\n") == 1
    assert main(["fixed-weights", str(store), "good", "--beta", "0.5"]) == 0
    out = capsys.readouterr().out
    # by hand: epochs normalised (0.25, 0.75), (0.5, 0.5); EMA 0.5: (0.375, 0.625); times T = 2
    assert "task_weights: [0.75, 1.25]" in out
