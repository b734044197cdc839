"""analysis/verdict.py beyond the labels (mutation testing, docs/testing.md): each branch of ``decide`` with
its exact reason, the numbers ``verdicts`` reports next to a label (corrected p-values, the interval's level,
the seed floor, counts), tuning replicates tested on replicate means, and bad arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis
from analysis.errors import AnalysisError
from analysis.verdict import decide

# decide(diff, better, worse, equivalent, n, m, p_dir, level, p_tost, level_eq, lo, hi, ci_level, floor, test, margin)
BASE = dict(diff=1.0, better=False, worse=False, equivalent=False, n=5, m=6, p_dir=0.2, level=0.025, p_tost=0.3,
            level_eq=0.0125, lo=-0.5, hi=2.5, ci_level=0.95, floor=0.001, test="t", margin=0.5)


def _decide(**kw):
    return decide(**{**BASE, **kw})


def test_decide_each_branch_and_its_reason() -> None:
    assert _decide(better=True, p_dir=0.001, lo=0.25, hi=1.75) == (
        "better", "one-sided p = 0.001 < 0.025 (corrected level); 95.0% interval [+0.25, +1.75] above 0")
    assert _decide(worse=True, p_dir=0.004, lo=-3.0, hi=-1.0, ci_level=0.9) == (
        "worse", "one-sided p = 0.004 < 0.025 (corrected level); 90.0% interval [-3, -1] below 0")
    assert _decide(equivalent=True, p_tost=0.002) == ("equivalent", "TOST p = 0.002 < 0.0125: within ±0.5")
    assert _decide(better=True, equivalent=True, p_tost=0.002, margin=1.0) == (
        "equivalent", "TOST p = 0.002 < 0.0125: within ±1 (the difference is significant but smaller than the margin)")
    assert _decide(worse=True, equivalent=True, p_tost=0.002)[1].endswith("smaller than the margin)")
    assert _decide() == ("inconclusive", "95.0% interval [-0.5, +2.5] contains 0 and is not within ±0.5")
    assert _decide(p_dir=float("nan")) == ("inconclusive", "no test possible (identical or constant values)")


def test_decide_needs_two_seeds_per_side() -> None:
    for n, m in ((1, 5), (5, 1), (0, 0), (1, 1)):
        assert _decide(n=n, m=m, better=True) == ("inconclusive",
                                                  f"needs at least 2 seeds per side (has {n} vs {m})")
    assert _decide(n=2, m=2, better=True)[0] == "better"


def test_decide_exact_test_floor() -> None:
    reason = ("the exact test cannot go below p = 0.0312 on 5 vs 6 seeds, not below the corrected level 0.025")
    assert _decide(test="perm", floor=0.03125) == ("inconclusive", reason)
    assert _decide(test="perm", floor=0.025)[1].startswith("the exact test cannot go below p = 0.025")  # at the level
    assert _decide(test="perm", floor=0.02)[1].endswith("contains 0 and is not within ±0.5")
    assert _decide(test="t", floor=0.5)[1].endswith("contains 0 and is not within ±0.5")  # t has no floor
    assert _decide(test="perm", floor=0.5, better=True)[0] == "better"  # a decision is never overridden


def test_bad_test_and_margin_are_errors() -> None:
    sel = _frame({"m": 2.0})
    with pytest.raises(AnalysisError, match=r"test must be one of \['perm', 't'\], got 'z'"):
        analysis.verdicts(sel, test="z")
    for margin in (0, -1.0):
        with pytest.raises(AnalysisError, match="the equivalence margin must be positive"):
            analysis.verdicts(sel, margin=margin)


# --- verdicts on a small selected frame ---------------------------------------------------------------------
SEEDS = list(range(6))
NOISE = np.array([0.3, -0.2, 0.5, -0.4, 0.1, -0.3])  # seed effect shared by all methods (relative, percent)


def _frame(effects: dict[str, float], seeds=SEEDS, own: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One metric (accuracy, base 0.5): value = 0.5 (1 + (effect + seed noise + own noise) / 100); Delta-m of
    a seed against EW's seed mean is then its relative offset in percent (times 100 / 100)."""
    rows = []
    for variant, eff in {"ew": 0.0, "rlw:normal": 0.0, **effects}.items():
        method, _, dist = variant.partition(":")
        extra = (own or {}).get(variant, np.zeros(len(seeds)))
        for i, s in enumerate(seeds):
            rows.append({"trial_id": f"{variant}-{s}", "dataset": "d", "arch": "hps", "variant": variant,
                         "method": method, "distribution": dist or None, "seed": s, "task": "t", "metric": "acc",
                         "higher_is_better": True, "value": 0.5 * (1 + (eff + NOISE[i % 6] + extra[i]) / 100)})
    return pd.DataFrame(rows)


def _dm(sel: pd.DataFrame, variant: str) -> np.ndarray:
    """Per-seed Delta-m (percent) against EW's seed mean, by hand."""
    ew = sel.loc[sel["variant"] == "ew", "value"].mean()
    v = sel[sel["variant"] == variant].sort_values("seed")["value"].to_numpy()
    return 100 * (v - ew) / ew


def test_verdict_columns_are_the_numbers_behind_the_label() -> None:
    own = {"a": np.array([0.1, -0.1, 0.2, 0.0, -0.2, 0.05]), "b": np.array([0.9, -1.5, 0.3, 1.2, -0.6, 0.0]),
           "c": np.array([0.0, 0.01, -0.01, 0.02, 0.0, -0.02]),
           "rlw:normal": np.array([0.02, -0.01, 0.0, 0.01, -0.02, 0.01])}
    sel = _frame({"a": 3.0, "b": -0.1, "c": 0.05}, own=own)
    v = analysis.verdicts(sel, against="rlw", reference="ew", margin=0.5).set_index("variant")
    names = ["a", "b", "c", "ew"]
    assert list(v.index) == names
    assert dict(v["verdict"]) == {"a": "better", "b": "inconclusive", "c": "equivalent", "ew": "equivalent"}
    rlw = _dm(sel, "rlw:normal")
    p_better, p_worse, p_tost, diffs = {}, {}, {}, {}
    for name in names:
        d = _dm(sel, name) - rlw
        diffs[name] = d
        p_better[name] = stats.ttest_1samp(d, 0, alternative="greater").pvalue
        p_worse[name] = stats.ttest_1samp(d, 0, alternative="less").pvalue
        p_tost[name] = max(stats.ttest_1samp(d, -0.5, alternative="greater").pvalue,
                           stats.ttest_1samp(d, 0.5, alternative="less").pvalue)
        r = v.loc[name]
        assert r["diff_delta_m"] == pytest.approx(d.mean(), abs=1e-9)
        assert r["p_better"] == pytest.approx(p_better[name], rel=1e-6)
        assert r["p_worse"] == pytest.approx(p_worse[name], rel=1e-6)
        assert r["p_tost"] == pytest.approx(p_tost[name], rel=1e-6)
        assert r["sd_diff"] == pytest.approx(np.std(d, ddof=1), rel=1e-9)
        assert (r["n_method"], r["n_baseline"], bool(r["paired"])) == (6, 6, True)
        assert (r["completed"], r["failed"], r["diverged"]) == (6, 0, 0)
        assert (r["against"], r["margin"], r["test"], r["reference"], r["family_size"]) == ("rlw:normal", 0.5, "t",
                                                                                            "ew", 4)
        assert r["min_p"] == 0.0  # the t test has no floor (the exact test's: below)
        assert r["p"] == pytest.approx(p_better[name] if d.mean() >= 0 else p_worse[name], rel=1e-6)
    # Holm over the family of 4, per side
    for col, ps in (("p_better_adj", p_better), ("p_worse_adj", p_worse), ("p_tost_adj", p_tost)):
        order = sorted(names, key=ps.get)
        adj, run = {}, 0.0
        for k, name in enumerate(order):
            run = max(run, min(1.0, ps[name] * (4 - k)))
            adj[name] = run
        for name in names:
            assert v.loc[name, col] == pytest.approx(adj[name], rel=1e-6), col
    # the interval's level is 1 - 2 x the deciding test's local (Holm) level; 'better' a: the first step
    a = v.loc["a"]
    rank_a = sorted(names, key=p_better.get).index("a")
    level = 0.05 / (4 - rank_a)
    assert a["ci_level"] == pytest.approx(1 - 2 * level)
    t = stats.t.ppf(1 - level, 5)
    se = np.std(diffs["a"], ddof=1) / np.sqrt(6)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((diffs["a"].mean() - t * se, diffs["a"].mean() + t * se))
    assert a["ci_low"] > 0 and a["p_adj"] == pytest.approx(a["p_better_adj"])
    # every row's interval level comes from its deciding test (TOST for equivalent, else the side of its sign)
    for name in names:
        r = v.loc[name]
        if r["verdict"] == "equivalent":
            lv = _holm_level(p_tost, name)
        elif r["verdict"] == "better" or (r["verdict"] == "inconclusive" and diffs[name].mean() >= 0):
            lv = _holm_level(p_better, name)
        else:
            lv = _holm_level(p_worse, name)
        assert r["ci_level"] == pytest.approx(1 - 2 * lv), name
        t = stats.t.ppf(1 - lv, 5)
        se = np.std(diffs[name], ddof=1) / np.sqrt(6)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((diffs[name].mean() - t * se, diffs[name].mean() + t * se))
    assert diffs["b"].mean() < 0 and v.loc["b", "p"] == pytest.approx(p_worse["b"], rel=1e-6)
    assert v.loc["b", "p_adj"] == pytest.approx(v.loc["b", "p_worse_adj"])
    c = v.loc["c"]
    assert -0.5 < c["ci_low"] < c["ci_high"] < 0.5
    assert "TOST p" in c["reason"] and "within ±0.5" in c["reason"]
    assert v.loc["b", "ci_low"] < 0 < v.loc["b", "ci_high"]


def _holm_level(ps: dict[str, float], name: str, alpha: float = 0.05) -> float:
    """Holm's local level of ``name``: alpha / (F - r) along the sorted p-values while all are rejected, then
    the first acceptance's level for every later one."""
    order = sorted(ps, key=ps.get)
    f = len(order)
    level = None
    for r, k in enumerate(order):
        step = alpha / (f - r)
        if level is None and ps[k] >= step:
            level = step
        if k == name:
            return step if level is None else level
    raise KeyError(name)


def test_worse_uses_the_worse_sides_level_and_p() -> None:
    sel = _frame({"w": -3.0}, own={"w": np.array([0.1, -0.1, 0.2, 0.0, -0.2, 0.05])})
    r = analysis.verdicts(sel, against="rlw", reference="ew").set_index("variant").loc["w"]
    d = _dm(sel, "w") - _dm(sel, "rlw:normal")
    assert r["verdict"] == "worse"
    assert r["p"] == pytest.approx(stats.ttest_1samp(d, 0, alternative="less").pvalue, rel=1e-6)
    assert r["p_adj"] == pytest.approx(r["p_worse_adj"])
    assert r["ci_level"] == pytest.approx(0.9) and r["ci_high"] < 0
    assert "below 0" in r["reason"]


def test_perm_test_reports_exact_one_sided_p_values() -> None:
    own = {"a": np.array([0.1, -0.1, 0.2, 0.0, -0.2, 0.05])}
    sel = _frame({"a": 3.0}, own=own)
    r = analysis.verdicts(sel, against="rlw", reference="ew", test="perm").set_index("variant").loc["a"]
    # every one of the 6 differences is positive: the sign-flip p is the floor 1/64, the other side 1
    assert r["p_better"] == pytest.approx(1 / 64) and r["p_worse"] == pytest.approx(1.0)
    assert r["verdict"] == "better" and r["test"] == "perm"
    unpaired = _frame({"a": 3.0}, own=own, seeds=SEEDS)
    unpaired.loc[unpaired["variant"] == "a", "seed"] += 100
    u = analysis.verdicts(unpaired, against="rlw", reference="ew", test="perm").set_index("variant").loc["a"]
    from math import comb
    assert not bool(u["paired"]) and u["p_better"] == pytest.approx(1 / comb(12, 6))
    assert u["min_p"] == pytest.approx(1 / comb(12, 6))


def test_perm_floor_above_the_level_says_so() -> None:
    sel = _frame({"a": 3.0}, seeds=[0, 1, 2, 3], own={"a": np.array([0.1, -0.1, 0.2, 0.0])})
    r = analysis.verdicts(sel, against="rlw", reference="ew", test="perm").set_index("variant").loc["a"]
    assert r["verdict"] == "inconclusive" and r["min_p"] == pytest.approx(1 / 16)
    # a family of two (a and EW against RLW): Holm's first level is 0.05 / 2
    assert r["reason"] == ("the exact test cannot go below p = 0.0625 on 4 vs 4 seeds, not below the corrected "
                           "level 0.025")


def test_missing_baseline_is_skipped_or_an_error() -> None:
    sel = _frame({"a": 3.0})
    other = sel[sel["variant"] != "rlw:normal"].assign(dataset="e")
    other["trial_id"] = "e-" + other["trial_id"]
    both = pd.concat([sel, other], ignore_index=True)
    v = analysis.verdicts(both, against="rlw", reference="ew", skip_missing=True)
    assert set(v["dataset"]) == {"d"} and v.attrs["skipped"] == ["e"]
    with pytest.raises(AnalysisError, match="rlw"):
        analysis.verdicts(both, against="rlw", reference="ew")
    empty = analysis.verdicts(other, against="rlw", reference="ew", skip_missing=True)
    assert empty.empty and list(empty.columns) == ["dataset", "arch", "variant", "against", "verdict"]
    assert empty.attrs["skipped"] == ["e"]


def test_perm_p_values_from_two_seeds_none_from_one() -> None:
    own = {"a": np.array([0.1, -0.1, 0.2, 0.0, -0.2, 0.05])}
    two = _frame({"a": 3.0}, own=own)
    two = two[two["seed"] < 2]
    r = analysis.verdicts(two, against="rlw", reference="ew", test="perm").set_index("variant").loc["a"]
    assert r["p_better"] == pytest.approx(0.25) and r["p_worse"] == pytest.approx(1.0)  # both pairs positive
    one = _frame({"a": 3.0}, own=own)
    one = one[(one["seed"] < 2) & ~((one["variant"] == "a") & (one["seed"] == 1))]
    r1 = analysis.verdicts(one, against="rlw", reference="ew", test="perm").set_index("variant").loc["a"]
    assert np.isnan(r1["p_better"]) and np.isnan(r1["p_worse"]) and r1["verdict"] == "inconclusive"
    assert r1["reason"] == "needs at least 2 seeds per side (has 1 vs 2)"


# --- survivors of the 2026-11-28 mutation run of verdicts / _summaries / _perm_one_sided (docs/testing.md) ------
OWN = {"a": np.array([0.1, -0.1, 0.2, 0.0, -0.2, 0.05]), "b": np.array([0.9, -1.5, 0.3, 1.2, -0.6, 0.0]),
       "c": np.array([0.0, 0.01, -0.01, 0.02, 0.0, -0.02]),
       "rlw:normal": np.array([0.02, -0.01, 0.0, 0.01, -0.02, 0.01])}


def _welch(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(mean difference, Welch standard error, Welch-Satterthwaite df), written out."""
    vx, vy = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return float(np.mean(x) - np.mean(y)), float(np.sqrt(vx + vy)), float(df)


@pytest.mark.parametrize("correction,f", [("bonferroni", 4), ("none", 1)])
def test_every_side_uses_the_asked_correction(correction: str, f: int) -> None:
    """Bonferroni: every local level is alpha / F (Holm's would be alpha / 3 for the second equivalent row);
    'none': alpha. The corrected p-values are min(1, F p) (F = 1: p itself)."""
    sel = _frame({"a": 3.0, "b": -0.1, "c": 0.05}, own=OWN)
    v = analysis.verdicts(sel, against="rlw", reference="ew", correction=correction).set_index("variant")
    assert dict(v["verdict"]) == {"a": "better", "b": "inconclusive", "c": "equivalent", "ew": "equivalent"}
    for name, r in v.iterrows():
        for side in ("better", "worse", "tost"):
            assert r[f"p_{side}_adj"] == pytest.approx(min(1.0, f * r[f"p_{side}"]), rel=1e-9), (name, side)
        assert r["ci_level"] == pytest.approx(1 - 2 * 0.05 / f), name


def test_unpaired_rows_are_welch_tests_on_all_seeds_and_carry_the_bayes_posterior() -> None:
    """The method ran seeds 100..105, the baseline 0..5: nothing pairs; p is Welch's one-sided p on the two sets
    of per-seed Delta-m, and the Bayesian posterior is t(Welch df, mean difference, Welch se)."""
    sel = _frame({"a": 3.0}, own=OWN)
    sel.loc[sel["variant"] == "a", "seed"] += 100
    x, y = _dm(sel, "a"), _dm(sel, "rlw:normal")
    v = analysis.verdicts(sel, against="rlw", reference="ew", bayes=True).set_index("variant")
    r = v.loc["a"]
    assert not bool(r["paired"]) and (r["n_method"], r["n_baseline"]) == (6, 6)
    assert r["p_better"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue,
                                          rel=1e-6)
    assert r["verdict"] == "better"
    mean, se, df = _welch(x, y)
    assert r["diff_delta_m"] == pytest.approx(mean)
    assert r["bayes_p_better"] == pytest.approx(stats.t.sf(0.5, df, loc=mean, scale=se), rel=1e-6)
    assert r["bayes_p_worse"] == pytest.approx(stats.t.cdf(-0.5, df, loc=mean, scale=se), rel=1e-6)
    # the paired row (EW against RLW, shared seeds): t(n - 1, mean, sd / sqrt(n)) of the per-seed differences
    d = _dm(sel, "ew") - y
    e = v.loc["ew"]
    loc, scale = d.mean(), np.std(d, ddof=1) / np.sqrt(6)
    assert e["bayes_p_equivalent"] == pytest.approx(stats.t.cdf(0.5, 5, loc=loc, scale=scale)
                                                    - stats.t.cdf(-0.5, 5, loc=loc, scale=scale), rel=1e-6)


def test_unpaired_tuning_replicates_are_tested_on_replicate_means() -> None:
    """Three tuning replicates of the method x seeds 100..102 against the baseline's seeds 0..5: unpaired, so
    the test is Welch's on the 3 replicate means (each the mean of its 3 seeds) against the 6 baseline seeds."""
    sel = _frame({}, own=OWN)
    rows, reps = [], []
    offsets = {0: 2.0, 1: 3.5, 2: 2.6}
    for k, off in offsets.items():
        for j, s in enumerate((100, 101, 102)):
            tid = f"a-r{k}-{s}"
            rows.append({"trial_id": tid, "dataset": "d", "arch": "hps", "variant": "a", "method": "a",
                         "distribution": None, "seed": s, "task": "t", "metric": "acc", "higher_is_better": True,
                         "value": 0.5 * (1 + (off + NOISE[j] + 0.1 * k * j) / 100)})
    sel = pd.concat([sel, pd.DataFrame(rows)], ignore_index=True)
    trials = sel.drop_duplicates("trial_id")[["trial_id", "dataset", "arch", "variant", "seed"]].assign(
        status="completed", replicate=[int(t.split("-")[1][1:]) if t.startswith("a-r") else 0 for t in
                                       sel.drop_duplicates("trial_id")["trial_id"]])
    ew = sel.loc[sel["variant"] == "ew", "value"].mean()
    a = sel[sel["variant"] == "a"]
    dm = 100 * (a["value"].to_numpy() - ew) / ew
    means = pd.Series(dm).groupby(a["trial_id"].str.split("-").str[1].to_numpy()).mean().to_numpy()
    y = _dm(sel, "rlw:normal")
    r = analysis.verdicts(sel, against="rlw", reference="ew", trials=trials).set_index("variant").loc["a"]
    assert not bool(r["paired"]) and r["replicates"] == 3 and r["n_method"] == 9
    mean, se, df = _welch(means, y)
    assert r["diff_delta_m"] == pytest.approx(mean)
    assert r["p_better"] == pytest.approx(stats.ttest_ind(means, y, equal_var=False, alternative="greater").pvalue,
                                          rel=1e-6)
    t = stats.t.ppf(0.5 + r["ci_level"] / 2, df)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((mean - t * se, mean + t * se))
