"""Tuning variance (replicate -> seed), the convergence check: behaviour on stores and the simulations
behind docs/statistics.md (larger runs: `python bench/inference_sims.py`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import convergence, simulation as sim, tuning
from analysis.synthetic import SyntheticStudy, make_store


def test_variance_components_match_a_hand_anova():
    d = np.array([1.0, 2.0, 3.0, 5.0, 6.0, 7.0])
    c = np.array([0, 0, 0, 1, 1, 1])
    # means 2 and 6, grand 4: MSB = 3 * (4 + 4) / 1 = 24, MSW = (1 + 0 + 1) * 2 / 4 = 1, n0 = 3
    between, within, share = tuning.variance_components(d, c)
    assert (between, within) == pytest.approx(((24 - 1) / 3, 1.0))
    assert share == pytest.approx(between / (between + 1.0))
    assert np.isnan(tuning.variance_components(d, np.zeros(6))[2])


def test_replicates_are_read_from_the_trials_table_and_tested_on_replicate_means(tmp_path):
    spec = SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "big": 3.0}}, seeds=list(range(4)), epochs=3,
                replicates=3, tuning_sd=1.0)
    store = make_store(tmp_path / "s", spec)
    trials = analysis.load_trials(store)
    assert sorted(trials["replicate"].unique()) == [0, 1, 2]
    v = analysis.verdicts(analysis.load(store), against="rlw", reference="ew", trials=trials)
    row = v.set_index("variant").loc["big"]
    assert row["replicates"] == 3 and row["n_method"] == 12 and row["paired"]
    assert 0 <= row["tuning_share"] <= 1 and row["hb_low"] < row["diff_delta_m"] < row["hb_high"]
    # df = K - 1 = 2: the interval is the t interval of the 3 replicate means of the paired differences
    c = analysis.compare(analysis.load(store), baseline="rlw", reference="ew", trials=trials)
    r = c[(c["task"] == "delta_m") & (c["variant"] == "big")].iloc[0]
    d = np.asarray(r["x"]) - np.asarray(r["y"])
    means = pd.Series(d).groupby(np.asarray(r["clusters"])).mean().to_numpy()
    from scipy import stats
    ci = stats.ttest_1samp(means, 0).confidence_interval(row["ci_level"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    text = analysis.summary_table(store)
    assert "3 tuning replicates" in text and "not accounted for" not in text


def test_one_replicate_says_tuning_variance_is_not_accounted_for(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "m": 1.0}}, seeds=[0, 1, 2]))
    assert "tuning variance is not accounted for" in analysis.summary_table(store)


def test_tuning_simulation_replicate_means_cover_naive_does_not():
    """K = 3 replicates x 5 seeds, tuning sd = seed sd: the t interval that ignores replicates covers the
    truth far below its 90% (65% in the bench); the replicate-mean t interval (the verdict's) covers;
    the hierarchical bootstrap lies between (80%)."""
    r = sim.tuning_coverage(3, 5, 1.0, reps=300, rng_seed=1)
    assert r["naive t"] < 0.8 and r["replicate-mean t"] >= 0.85
    assert r["naive t"] < r["hierarchical bootstrap"] < r["replicate-mean t"] + 0.03
    assert r["estimated share"] == pytest.approx(r["true share"], abs=0.2)


def test_convergence_share_and_warning():
    best = pd.DataFrame({"dataset": "d", "arch": "hps", "variant": ["a"] * 4 + ["b"] * 4,
                         "best_epoch": [4, 4, 4, 2, 1, 2, 4, 3], "last_epoch": 4})
    s = convergence.last_epoch_share(best).set_index("variant")
    assert s.loc["a", "share_at_last"] == 0.75 and s.loc["b", "share_at_last"] == 0.25
    w = convergence.convergence_warning(s.reset_index())
    assert w.startswith(convergence.WARNING) and "d/a 75%" in w and "d/b" not in w
    assert convergence.convergence_warning(s.reset_index()[lambda x: x["variant"] == "b"]) is None


def test_report_warns_when_training_stops_too_early(tmp_path):
    """Synthetic curves still rising at their last epoch (2 epochs) trigger the warning; a long plateau
    (60 epochs) does not."""
    short = make_store(tmp_path / "short", SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0}}, seeds=[0, 1, 2],
                                                 epochs=2, epoch_sd=0.01))
    assert convergence.WARNING in analysis.summary_table(short)
    long = make_store(tmp_path / "long", SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0}}, seeds=[0, 1, 2],
                                               epochs=60, epoch_sd=1.0))
    assert convergence.WARNING not in analysis.summary_table(long)
