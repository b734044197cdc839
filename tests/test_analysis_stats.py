"""Tests, corrections, verdicts, power and cross-dataset statistics against scipy / statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

import analysis
from analysis import power, ranks, robust
from analysis.stats import correct, holm, run_tests

from analysis_fixtures import SyntheticStudy, make_store, rows, store_from_rows


def _pairs(x, y, hib=True, paired=False):
    return pd.DataFrame({"x": [list(x)], "y": [list(y)], "higher_is_better": [hib], "paired": [paired],
                         "n_method": [len(x)], "n_baseline": [len(y)], "task": ["t"]})


def test_independent_tests_match_scipy():
    x, y = [1.2, 1.5, 1.1, 1.9, 1.4], [0.9, 1.0, 1.3, 0.8, 0.7, 1.05]
    r = run_tests(_pairs(x, y)).iloc[0]
    welch = stats.ttest_ind(x, y, equal_var=False)
    assert r["p_t"] == pytest.approx(welch.pvalue)
    ci = welch.confidence_interval(0.95)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
    perm = stats.permutation_test((x, y), lambda a, b: np.mean(a) - np.mean(b), n_resamples=np.inf)
    assert r["p_perm"] == pytest.approx(perm.pvalue)
    n, m = len(x), len(y)
    sp = math.sqrt(((n - 1) * np.var(x, ddof=1) + (m - 1) * np.var(y, ddof=1)) / (n + m - 2))
    g = (np.mean(x) - np.mean(y)) / sp * (1 - 3 / (4 * (n + m) - 9))
    assert r["hedges_g"] == pytest.approx(g)
    u = stats.mannwhitneyu(x, y).statistic
    assert r["a12"] == pytest.approx(u / (n * m))
    assert r["min_p"] == pytest.approx(2 / math.comb(11, 5))  # two-sided floor for n != m (issue 11)


def test_paired_tests_match_scipy():
    x, y = [1.2, 1.5, 1.1, 1.9, 1.4, 1.3], [1.0, 1.4, 1.2, 1.5, 1.1, 1.0]
    r = run_tests(_pairs(x, y, paired=True)).iloc[0]
    assert r["p_t"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    perm = stats.permutation_test((x, y), lambda a, b: np.mean(a - b), permutation_type="samples",
                                  n_resamples=np.inf)
    assert r["p_perm"] == pytest.approx(perm.pvalue)
    assert r["min_p"] == pytest.approx(2 / 2 ** 6)


def test_direction_aware_effect_sizes_for_lower_is_better():
    x, y = [0.30, 0.31, 0.29], [0.40, 0.41, 0.39]  # method has lower error: better
    r = run_tests(_pairs(x, y, hib=False)).iloc[0]
    assert r["diff"] < 0 and r["hedges_g"] > 0 and r["a12"] == 1.0


def test_holm_and_bh_on_known_p_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    s = pd.Series([0.01, np.nan, 0.04, 0.03])
    out = correct(s, "bh")
    assert np.isnan(out.iloc[1])
    assert out.dropna().to_numpy() == pytest.approx(multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1])


def test_compare_family_correction_and_reference(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0, "rlw:normal": 1.0, "uw": 0.5}}, seeds=list(range(5)),
                                            epochs=3))
    sel = analysis.select(analysis.load(store))
    c = analysis.compare(sel, baseline="rlw", reference="ew")
    assert set(c["baseline"]) == {"rlw:normal"} and set(c["variant"]) == {"ew", "uw"}
    assert c["family_size"].iloc[0] == len(c) == 2 * 7
    assert c["p_perm_adj"].to_numpy() == pytest.approx(holm(c["p_perm"].to_numpy()))
    d = c[c["task"] == "delta_m"].set_index("variant")
    dm = analysis.delta_m(sel, "ew").set_index("variant")
    assert d.loc["uw", "diff"] == pytest.approx(dm.loc["uw", "delta_m"] - dm.loc["rlw:normal", "delta_m"])


def test_verdict_large_effect_is_better_and_no_effect_is_equivalent(tmp_path):
    spec = SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "big": 4.0, "same": 0.0}}, seeds=list(range(8)),
                epochs=3, seed_sd=0.2, epoch_sd=0.02)
    store = make_store(tmp_path / "s", spec)
    v = analysis.verdicts(analysis.select(analysis.load(store)), against="rlw", reference="ew",
                          margin=0.5).set_index("variant")
    assert v.loc["big", "verdict"] == "better"
    assert v.loc["same", "verdict"] == "equivalent"
    assert v.loc["ew", "verdict"] == "equivalent"
    assert v.loc["big", "diff_delta_m"] == pytest.approx(4.0, abs=0.5)


def test_three_seeds_exact_test_cannot_decide_t_test_can(tmp_path):
    """3 shared seeds: the exact sign-flip test cannot go below 1/8 (its reason says so); the default
    t-test decides a large effect and its reason does not cite the exact floor."""
    spec = SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "big": 4.0}}, seeds=[0, 1, 2], epochs=2)
    sel = analysis.select(analysis.load(make_store(tmp_path / "s", spec)))
    perm = analysis.verdicts(sel, against="rlw", test="perm").set_index("variant").loc["big"]
    assert perm["verdict"] == "inconclusive" and "cannot go below p = 0.125" in perm["reason"]
    t = analysis.verdicts(sel, against="rlw").set_index("variant").loc["big"]
    assert t["verdict"] == "better" and "exact" not in t["reason"] and t["ci_low"] > 0


def test_power_floors_and_seeds_needed():
    assert power.min_p_independent(3, 3) == pytest.approx(0.1)
    assert power.min_p_independent(4, 4) == pytest.approx(2 / 70)
    assert power.min_p_independent(5, 5) == pytest.approx(2 / 252)
    assert power.min_p_paired(5) == pytest.approx(0.0625)
    assert not power.can_reach(power.min_p_independent(5, 5), 0.05, 20)
    assert ranks.min_p_wilcoxon(4) == pytest.approx(0.125)
    warns = power.power_warnings([(3, 3, False)], 0.05, 1, sided="two")
    assert warns and "0.1" in warns[0]
    assert not power.power_warnings([(3, 3, True)], 0.05, 1, test="t")  # a t-test has no floor
    # two-sample, two-sided: d = 1 needs 17 per group at alpha 0.05, power 0.8 (Cohen's tables)
    assert power.seeds_needed(1.0, 1.0, paired=False, sided="two") == 17
    assert power.seeds_needed(0.5, 1.0) > power.seeds_needed(1.0, 1.0) > power.seeds_needed(2.0, 1.0)


def _paired_power(n: int, dz: float, level: float) -> float:
    """Power of the one-sided one-sample t-test from the noncentral t (independent of statsmodels)."""
    crit = stats.t.ppf(1 - level, n - 1)
    return float(stats.nct.sf(crit, n - 1, dz * math.sqrt(n)))


def test_n_ne_m_floors_and_paired_seeds_needed_with_family():
    # two-sided exact floor is 2 / C(n+m, n) also for n != m: 4 vs 3 cannot go below 2/35 = 0.057
    assert power.min_p_independent(4, 3) == pytest.approx(2 / 35) and power.min_p_independent(4, 3) > 0.05
    assert power.min_p_independent(4, 3, sided="one") == pytest.approx(1 / 35)
    assert power.min_p_paired(5, sided="one") == pytest.approx(1 / 32)
    for dz, fam in [(1.0, 1), (1.0, 28), (2.0, 10)]:
        n = power.seeds_needed(dz, 1.0, family_size=fam)
        level = 0.05 / fam
        assert _paired_power(int(n), dz, level) >= 0.8 > _paired_power(int(n) - 1, dz, level)
    # perm: also past the floor (1/2^n < 0.05/28 needs n = 10), whatever the effect (1/2^9 = 0.00195 > 0.00179)
    assert power.seeds_needed(10.0, 1.0, test="perm", family_size=28) == 10


def test_check_design_floor_and_power():
    c = power.check_design(5, test="perm", family_size=1)
    assert c.possible and c.min_p == pytest.approx(1 / 32)
    c = power.check_design(5, test="perm", family_size=20)
    assert not c.possible and c.seeds_possible == 9 and "9 seeds" in c.message  # 1/2^9 < 0.05/20 < 1/2^8
    c = power.check_design(5, test="t", family_size=20, effect_size=2.0)
    assert c.possible and c.power == pytest.approx(_paired_power(5, 2.0, 0.05 / 20), rel=1e-3)
    assert c.seeds_for_power == power.seeds_needed(2.0, 1.0, family_size=20)
    assert not power.check_design(1, test="t").possible
    c = power.check_design(5, test="t", replicates=3, effect_size=1.0)
    assert c.possible and "3 tuning replicates" in c.message
    with pytest.raises(ValueError):
        power.check_design(5, test="z")


def test_friedman_iman_davenport_cd_and_wilcoxon_match_scipy():
    rng = np.random.default_rng(1)
    m = pd.DataFrame(rng.normal(size=(8, 4)) + np.array([0, 0.5, 1.0, 2.0]), columns=list("abcd"))
    f = ranks.friedman(m)
    chi2, p = stats.friedmanchisquare(*[m[c] for c in m])
    assert f["chi2"] == pytest.approx(chi2) and f["p_chi2"] == pytest.approx(p)
    n, k = m.shape
    ff = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert f["iman_davenport_f"] == pytest.approx(ff)
    r = ranks.average_ranks(m)
    assert r.index[0] == "d" and r.sum() == pytest.approx(k * (k + 1) / 2)
    # Demsar (2006): q_0.05 for k = 4 is 2.569
    assert ranks.critical_difference(4, 8) == pytest.approx(2.569 * math.sqrt(4 * 5 / 48), rel=1e-3)
    pw = ranks.pairwise_wilcoxon(m)
    assert pw.loc[(pw.a == "a") & (pw.b == "d"), "p"].iloc[0] == pytest.approx(stats.wilcoxon(m["a"] - m["d"]).pvalue)
    assert pw["p_adj"].to_numpy() == pytest.approx(holm(pw["p"].to_numpy()))


def test_iqm_bootstrap_equals_scipy_trim_mean_and_shares_its_draws():
    """The IQM of each resample is scipy's trim_mean bit for bit (ties, several datasets, NaN through scipy);
    a table's shared draws give each variant the same interval as a fresh call."""
    rng = np.random.default_rng(2)
    for _ in range(50):
        runs = [np.round(rng.normal(size=(int(rng.integers(1, 30)), int(rng.integers(1, 25)))), 1)
                for _ in range(int(rng.integers(1, 4)))]
        runs = [r[: len(runs[0])] if len(r) >= len(runs[0]) else np.resize(r, (len(runs[0]), r.shape[1])) for r in runs]
        want = stats.trim_mean(np.concatenate(runs, axis=-1), 0.25, axis=-1)
        assert np.array_equal(robust._iqm_batch(runs), want)
    nan = [np.array([[1.0, np.nan, 3.0, 4.0]])]
    assert np.array_equal(robust._iqm_batch(nan), stats.trim_mean(nan[0], 0.25, axis=-1), equal_nan=True)
    runs = {v: [rng.normal(size=7), rng.normal(size=5)] for v in "abc"}
    memo: dict = {}
    for r in runs.values():
        assert robust.iqm_ci(r, 300, seed=4, memo=memo) == robust.iqm_ci(r, 300, seed=4)


def test_vectorised_pairwise_wilcoxon_equals_one_call_per_pair():
    """Clean pairs go to scipy in one call, pairs with zeros or ties one by one: every p equals scipy's
    wilcoxon on that pair alone (exact without ties, permutation / normal approximation with them)."""
    rng = np.random.default_rng(0)
    for n in (4, 6, 10, 60):  # with ties at 10 seeds scipy resamples (~0.1 s a pair, at 12 seeds 4x that)
        m = pd.DataFrame(rng.normal(size=(n, 6)), columns=list("abcdef"))
        m["b"] = m["a"]                              # all differences zero: p = 1
        m.loc[0, "c"] = m.loc[0, "d"]                # one zero difference
        m["e"] = np.round(m["e"])                    # ties likely
        pw = ranks.pairwise_wilcoxon(m)
        for r in pw.itertuples():
            d = m[r.a].to_numpy() - m[r.b].to_numpy()
            want = 1.0 if np.all(d == 0) else stats.wilcoxon(d).pvalue
            assert r.p == want and r.median_diff == np.median(d)


def test_iqm_and_probability_of_improvement():
    runs = [np.arange(8.0), np.array([100.0, 0.0, 1.0, 2.0])]
    pooled = np.concatenate(runs)
    assert robust.iqm(runs) == pytest.approx(stats.trim_mean(pooled, 0.25))
    x, y = [np.array([2.0, 3.0]), np.array([1.0, 1.0])], [np.array([1.0, 2.0]), np.array([1.0, 0.0])]
    # dataset 1: pairs (2>1, 2=2, 3>1, 3>2) -> 3.5/4; dataset 2: (1=1, 1>0, 1=1, 1>0) -> 3/4
    assert robust.probability_of_improvement(x, y) == pytest.approx((3.5 / 4 + 3 / 4) / 2)
    p, lo, hi = robust.iqm_ci(runs, n_resamples=500)
    assert lo <= p <= hi


def test_improvement_bootstrap_equals_the_elementwise_computation():
    """The bootstrap of P(X > Y) from resample counts equals, bit for bit, P computed on the resampled values
    themselves (draws: x's datasets then y's, from default_rng(seed)); shared draws across a table's
    variants change nothing."""
    rng = np.random.default_rng(0)
    x = [np.round(rng.normal(0.2, 1, 7), 1), np.round(rng.normal(0, 1, 5), 1)]
    y = [np.round(rng.normal(0, 1, 6), 1), np.round(rng.normal(0, 1, 4), 1)]
    draws = np.random.default_rng(3)
    ix = [draws.integers(0, len(r), (300, len(r))) for r in x]
    iy = [draws.integers(0, len(r), (300, len(r))) for r in y]
    want = np.empty(300)
    for b in range(300):
        per_dataset = []
        for xd, yd, a, c in zip(x, y, ix, iy):
            xs, ys = xd[a[b]], yd[c[b]]
            per_dataset.append(sum((u > v) + 0.5 * (u == v) for u in xs for v in ys) / (len(xs) * len(ys)))
        want[b] = np.mean(per_dataset)
    got = robust._poi_boot(x, y, 300, seed=3, batch=7)
    assert got == pytest.approx(want, abs=1e-15)
    p, lo, hi = robust.improvement_ci(x, y, n_resamples=300, seed=3)
    assert (lo, hi) == tuple(np.quantile(got, [0.025, 0.975]))
    memo: dict = {}
    assert np.array_equal(robust._poi_boot(x, y, 300, 3, memo), got)
    assert np.array_equal(robust._poi_boot(x, y, 300, 3, memo), got)  # from the memo


def test_prepared_comparisons_equal_fresh_ones(tmp_path):
    """The report's shared units / values / pairs (stats.prepare) give the same tests and verdicts as
    computing each comparison from scratch, also with failed trials and a dataset without the baseline."""
    from analysis.stats import prepare
    spec = SyntheticStudy({"a": {"ew": 0.0, "rlw:normal": 1.0, "uw": 0.5, "cagrad": -0.5},
                           "b": {"ew": 0.0, "uw": 0.2, "cagrad": 0.1}}, seeds=[0, 1, 2, 3], epochs=3,
                          status={("a", "uw", 1): "failed", ("a", "cagrad", 2): "diverged"})
    store = make_store(tmp_path / "s", spec)
    trials = analysis.load_trials(store)
    sel = analysis.select(analysis.load(store))
    prep = prepare(sel, "ew", "task", trials)
    for against in ("ew", "rlw", "ew"):
        fresh = analysis.verdicts(sel, against=against, reference="ew", trials=trials, skip_missing=True)
        shared = analysis.verdicts(sel, against=against, reference="ew", trials=trials, skip_missing=True,
                                   prepared=prep)
        pd.testing.assert_frame_equal(fresh, shared)
        assert fresh.attrs["skipped"] == shared.attrs["skipped"]
    fresh = analysis.compare(sel, baseline="ew", trials=trials, test="perm")
    shared = analysis.compare(sel, baseline="ew", trials=trials, test="perm", prepared=prep)
    pd.testing.assert_frame_equal(fresh, shared)
    assert set(prep.pairs) == {("ew", None), ("rlw", ("a",))}  # with and without skip_missing: the same pairs
    with pytest.raises(analysis.AnalysisError, match="prepared"):
        analysis.compare(sel, baseline="ew", reference="uw", trials=trials, prepared=prep)


def test_single_seed_summary_does_not_crash(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0, "rlw:normal": 1.0, "uw": 0.5}}, seeds=[0], epochs=2))
    text = analysis.summary_table(store)
    assert "one seed per method" in text and "| rlw:normal |" in text
    assert "inconclusive" in text


def test_failed_seed_keeps_the_pairing_and_is_scored_worst(tmp_path):
    """A failed seed does not switch the comparison to unpaired: it is scored as the worst value of its
    comparison group (all variants and seeds), on every metric and on Delta-m."""
    spec = SyntheticStudy({"d": {"ew": 0, "uw": 1.0}}, seeds=[0, 1, 2, 3], epochs=2, status={("d", "uw", 3): "failed"})
    store = make_store(tmp_path / "s", spec)
    frame = analysis.load(store)
    c = analysis.compare(frame, baseline="ew")
    assert set(c["n_method"]) == {4} and set(c["n_baseline"]) == {4} and c["paired"].all()
    assert set(c["n_imputed_method"]) == {1}
    sel = analysis.select(frame)
    for _, r in c[c["task"] != "delta_m"].iterrows():
        vals = sel[(sel["task"] == r["task"]) & (sel["metric"] == r["metric"])]["value"]
        worst = vals.min() if r["higher_is_better"] else vals.max()
        assert r["x"][3] == pytest.approx(worst)
    ps = analysis.per_seed(sel, "ew")
    assert c[c["task"] == "delta_m"]["x"].iloc[0][3] == pytest.approx(ps["delta_m"].min())
    # a selected frame without statuses and without the trials table cannot know: seed 3 is unmatched
    c2 = analysis.compare(sel, baseline="ew")
    assert set(c2["n_method"]) == {3} and c2["paired"].all() and set(c2["n_unmatched"]) == {1}
    c3 = analysis.compare(sel, baseline="ew", trials=analysis.load_trials(store))
    assert set(c3["n_imputed_method"]) == {1} and set(c3["n_method"]) == {4}
