"""Budget curves (Dodge et al. 2019): expected best validation Delta-m after k tuning trials."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import budget
from analysis.synthetic import SyntheticStudy, metrics_frame, trials_frame, write_store


def test_expected_max_equals_enumeration():
    v = np.array([0.3, -1.0, 2.0, 0.5])
    for k in (1, 2, 3):
        exact = np.mean([max(t) for t in itertools.product(v, repeat=k)])
        assert budget.expected_max(v, np.array([k]))[0] == pytest.approx(exact)
    curve = budget.expected_max(v)
    assert curve[0] == pytest.approx(v.mean()) and np.all(np.diff(curve) >= 0) and curve[-1] <= v.max()


def test_order_changes_names_the_budget():
    rows = [("d", "hps", "a", k, e) for k, e in zip(range(1, 6), [1.0, 1.2, 1.3, 1.35, 1.4])]
    rows += [("d", "hps", "b", k, e) for k, e in zip(range(1, 6), [0.5, 1.1, 1.5, 1.8, 2.0])]
    c = pd.DataFrame(rows, columns=["dataset", "arch", "variant", "k", "expected"])
    (msg,) = budget.order_changes(c)
    assert "a at k = 1" in msg and "b from k = 3" in msg
    assert budget.order_changes(c[c["variant"] == "a"]) == []


def test_report_has_budget_curves_from_the_tuning_stage(tmp_path):
    """A store with a tuning stage (wide spread for 'wild', narrow for 'steady'): the report tabulates
    and draws the curves, counts a diverged tuning trial as the worst score, and says when the best method
    changes with the budget."""
    tune = SyntheticStudy({"d": {"ew": 0.0, "steady": 1.0, "wild": 0.0}}, seeds=list(range(8)), epochs=3, stage="tune",
                seed_sd=1.5, status={("d", "wild", 7): "diverged"})
    final = SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "steady": 1.0, "wild": 0.5}}, seeds=[0, 1, 2], epochs=3)
    metrics = pd.concat([metrics_frame(tune), metrics_frame(final)], ignore_index=True)
    store = write_store(tmp_path / "s", metrics, pd.concat([trials_frame(tune), trials_frame(final)]))
    scores = budget.tuning_scores(analysis.load(store), analysis.load_trials(store))
    assert len(scores) == 24 and scores["score"].isna().sum() == 1
    curves = budget.budget_curves(scores)
    wild = curves[curves["variant"] == "wild"]
    assert len(wild) == 8 and wild["n_imputed"].iloc[0] == 1
    assert (wild["low"] <= wild["expected"]).all() and (wild["expected"] <= wild["high"]).all()
    index = analysis.write_report(store, tmp_path / "rep")
    text = index.read_text()
    assert "## Tuning budget curves" in text and "k=8" in text
    assert (tmp_path / "rep" / "figures" / "d_budget.png").exists()
    assert (tmp_path / "rep" / "budget_curves.csv").exists()
    # the verdicts' units are the final stage's trials only (tuning trials share datasets and methods)
    v = pd.read_csv(tmp_path / "rep" / "verdicts.csv")
    assert set(v["n_method"]) == {3} and set(v["n_unmatched"]) == {0} and v["paired"].all()
