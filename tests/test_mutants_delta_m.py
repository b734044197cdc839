"""analysis/delta_m.py against numbers written out by hand (mutation testing, docs/testing.md): the signed
weights per task and per metric, a zero or missing baseline, a missing metric, per-architecture baselines,
the per-seed values and the paired / Welch interval of each cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.delta_m import (baseline_means, delta_m, delta_m_terms, delta_m_values, metric_weights, per_seed,
                              task_weights)
from analysis.errors import AnalysisError


def test_task_weights_per_task_and_per_metric() -> None:
    tasks = np.array(["seg", "seg", "depth"])
    hib = np.array([True, False, True])
    assert task_weights(tasks, hib) == pytest.approx([25.0, -25.0, 50.0])  # 100 s / (T N_t), T = 2
    assert task_weights(tasks, hib, per="metric") == pytest.approx([100 / 3, -100 / 3, 100 / 3])
    assert task_weights(np.array(["a", "b", "c", "c"]), np.ones(4, bool)) == pytest.approx(
        [100 / 3, 100 / 3, 50 / 3, 50 / 3])
    with pytest.raises(AnalysisError, match=r"per must be one of \('task', 'metric'\), got 'seed'"):
        task_weights(tasks, hib, per="seed")


def test_terms_and_values() -> None:
    terms = delta_m_terms([1.1, 0.5, 3.0], [1.0, 0.4, 0.0], [50.0, -50.0, 10.0])
    assert terms[:2] == pytest.approx([5.0, -12.5]) and np.isnan(terms[2])  # B = 0: undefined, never skipped
    v = delta_m_values(np.array([[1.1, 0.5], [0.9, 0.3]]), np.array([1.0, 0.4]), np.array([50.0, -50.0]))
    assert v == pytest.approx([5.0 - 12.5, -5.0 + 12.5])
    assert np.isnan(delta_m_values([1.0, np.nan], [1.0, 1.0], [50.0, 50.0]))


def test_metric_weights_per_dataset() -> None:
    m = pd.DataFrame({"dataset": ["d", "d", "d", "e", "d"], "task": ["a", "a", "b", "a", "a"],
                      "metric": ["x", "y", "x", "x", "x"], "higher_is_better": [True, False, True, False, True]})
    w = metric_weights(m).set_index(["dataset", "task", "metric"])["w"]
    assert dict(w) == pytest.approx({("d", "a", "x"): 25.0, ("d", "a", "y"): -25.0, ("d", "b", "x"): 50.0,
                                     ("e", "a", "x"): -100.0})
    wm = metric_weights(m, per="metric").set_index(["dataset", "task", "metric"])["w"]
    assert wm[("d", "b", "x")] == pytest.approx(100 / 3) and wm[("e", "a", "x")] == pytest.approx(-100.0)
    with pytest.raises(AnalysisError, match="per must be one of"):
        metric_weights(m, per="x")


METRICS = (("seg", "miou", True), ("depth", "err", False))


def _sel(values: dict[tuple[str, str], list[tuple[float, float]]], seeds=(0, 1, 2)) -> pd.DataFrame:
    """{(arch, variant): [(miou, err) per seed]} -> a selected frame."""
    rows = []
    for (arch, variant), per in values.items():
        method, _, dist = variant.partition(":")
        for s, vals in zip(seeds, per):
            for (task, metric, hib), v in zip(METRICS, vals):
                if v is None:
                    continue
                rows.append({"trial_id": f"{arch}-{variant}-{s}", "dataset": "d", "arch": arch, "variant": variant,
                             "method": method, "distribution": dist or None, "seed": s, "task": task,
                             "metric": metric, "higher_is_better": hib, "value": v})
    return pd.DataFrame(rows)


EW = [(0.5, 0.4), (0.6, 0.5), (0.4, 0.3)]  # means 0.5, 0.4
M = [(0.55, 0.42), (0.60, 0.40), (0.53, 0.30)]  # seed deltas: miou +10%, +20%, +6%; err -5%, 0%, +25% better


def _hand(pairs, base=(0.5, 0.4)) -> np.ndarray:
    return np.array([50 * (a - base[0]) / base[0] - 50 * (b - base[1]) / base[1] for a, b in pairs])


def test_per_seed_and_the_cell_interval_paired() -> None:
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M})
    ps = per_seed(sel, "ew").set_index(["variant", "seed"])
    assert ps.loc["m", "delta_m"].to_numpy() == pytest.approx(_hand(M))
    assert ps.loc["ew", "delta_m"].to_numpy() == pytest.approx(_hand(EW))
    assert set(ps["baseline"]) == {"ew"}
    d = delta_m(sel, "ew", confidence=0.9).set_index("variant")
    m = d.loc["m"]
    assert m["delta_m"] == pytest.approx(_hand(M).mean())
    diff = _hand(M) - _hand(EW)
    ci = stats.ttest_1samp(diff, 0).confidence_interval(0.9)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert m["sd"] == pytest.approx(np.std(_hand(M), ddof=1))
    assert (m["n_seeds"], m["n_incomplete"], m["baseline"], m["method"]) == (3, 0, "ew", "m")
    assert d.loc["ew", "delta_m"] == pytest.approx(0.0)
    assert list(d.columns) == ["dataset", "arch", "method", "distribution", "baseline", "delta_m", "ci_low",
                               "ci_high", "sd", "n_seeds", "n_incomplete"]


def test_the_interval_is_welchs_on_other_seeds_and_none_below_two() -> None:
    sel = pd.concat([_sel({("hps", "ew"): EW}), _sel({("hps", "m"): M}, seeds=(5, 6, 7)),
                     _sel({("hps", "one"): M[:1]})], ignore_index=True)
    d = delta_m(sel, "ew").set_index("variant")
    ci = stats.ttest_ind(_hand(M), _hand(EW), equal_var=False).confidence_interval(0.95)
    assert (d.loc["m", "ci_low"], d.loc["m", "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert np.isnan(d.loc["one", "ci_low"]) and np.isnan(d.loc["one", "ci_high"]) and d.loc["one", "n_seeds"] == 1


def test_a_missing_metric_makes_that_seed_incomplete() -> None:
    partial = [M[0], (M[1][0], None), M[2]]
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): partial})
    ps = per_seed(sel, "ew").set_index(["variant", "seed"])
    assert np.isnan(ps.loc[("m", 1), "delta_m"]) and np.isfinite(ps.loc[("m", 2), "delta_m"])
    d = delta_m(sel, "ew").set_index("variant").loc["m"]
    assert (d["n_seeds"], d["n_incomplete"]) == (2, 1)
    assert d["sd"] == pytest.approx(np.std(_hand([M[0], M[2]]), ddof=1))
    # the seeds differ now (0, 2 against 0, 1, 2): Welch's interval, not a paired one
    ci = stats.ttest_ind(_hand([M[0], M[2]]), _hand(EW), equal_var=False).confidence_interval(0.95)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_each_architecture_against_its_own_or_one_baseline() -> None:
    big = [(2 * a, 2 * b) for a, b in EW]
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M, ("mtan", "ew"): big, ("mtan", "m"): M})
    d = delta_m(sel, "ew").set_index(["arch", "variant"])["delta_m"]
    assert d[("mtan", "m")] == pytest.approx(_hand(M, (1.0, 0.8)).mean())  # against mtan's EW
    assert d[("hps", "m")] == pytest.approx(_hand(M).mean())
    b = delta_m(sel, "ew", baseline_arch="hps").set_index(["arch", "variant"])["delta_m"]
    assert b[("mtan", "m")] == pytest.approx(_hand(M).mean())
    assert b[("mtan", "ew")] == pytest.approx(_hand(big).mean())
    ref = baseline_means(sel, "ew").set_index(["arch", "metric"])["B"]
    assert ref[("mtan", "miou")] == pytest.approx(1.0) and ref[("hps", "err")] == pytest.approx(0.4)


def test_missing_or_zero_baseline_is_an_error() -> None:
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M, ("mtan", "m"): M})
    with pytest.raises(AnalysisError, match=r"baseline 'ew' is absent from: d/mtan"):
        delta_m(sel, "ew")
    with pytest.raises(AnalysisError, match=r"baseline 'rlw' is absent from: d$"):
        per_seed(sel, "rlw")
    zero = _sel({("hps", "ew"): [(0.0, 0.4)] * 3, ("hps", "m"): M})
    with pytest.raises(AnalysisError, match=r"baseline mean is 0 for \[\['d', 'seg', 'miou'\]\]"):
        delta_m(zero, "ew")
    with pytest.raises(AnalysisError, match="^no selected values to compute Delta-m on$"):
        delta_m(sel.iloc[:0], "ew")


def test_a_raw_frame_is_selected_first() -> None:
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M})
    val = sel.assign(split="val", epoch=1, study="s", stage="final")
    test = sel.assign(split="test", epoch=1, study="s", stage="final")
    raw = pd.concat([val, test], ignore_index=True)
    assert delta_m(raw, "ew").set_index("variant").loc["m", "delta_m"] == pytest.approx(_hand(M).mean())


def test_one_baseline_architecture_for_the_intervals_too() -> None:
    big = [(2 * a, 2 * b) for a, b in EW]
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M, ("mtan", "ew"): big, ("mtan", "m"): M})
    b = delta_m(sel, "ew", baseline_arch="hps").set_index(["arch", "variant"])
    diff = _hand(M) - _hand(EW)  # mtan's m against hps's EW, paired on the seeds
    ci = stats.ttest_1samp(diff, 0).confidence_interval(0.95)
    assert (b.loc[("mtan", "m"), "ci_low"], b.loc[("mtan", "m"), "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert b.loc[("mtan", "m"), "baseline"] == "ew"


def test_a_trial_without_any_baseline_metric_is_kept_with_no_value() -> None:
    """A trial whose metrics the baseline never reported is listed (incomplete), never silently dropped."""
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M})
    odd = sel[sel["variant"] == "m"].assign(variant="odd", method="odd", metric="other",
                                           trial_id=lambda d: "odd-" + d["trial_id"])
    both = pd.concat([sel, odd], ignore_index=True)
    ps = per_seed(both, "ew")
    assert ps["variant"].value_counts()["odd"] == 3 and ps.loc[ps["variant"] == "odd", "delta_m"].isna().all()
    d = delta_m(both, "ew").set_index("variant")
    assert "odd" in d.index and np.isnan(d.loc["odd", "delta_m"]) and d.loc["odd", "n_incomplete"] == 3


def test_the_method_column_is_plain_text() -> None:
    sel = _sel({("hps", "ew"): EW, ("hps", "m"): M})
    sel["method"] = sel["method"].astype("category")
    d = delta_m(sel, "ew")
    assert not isinstance(d["method"].dtype, pd.CategoricalDtype) and list(d["method"]) == ["ew", "m"]
