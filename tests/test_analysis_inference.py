"""Directional tests, their intervals, the design rule for failed seeds, and the simulations behind the
claims of docs/statistics.md (coverage, size, power, the diverged-seed case). Numbers in the docs come
from `python bench/inference_sims.py` (larger runs of the same functions)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

import analysis
from analysis import inference, permutation, simulation as sim


def test_one_sided_and_tost_match_scipy_and_statsmodels():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.4, 1, 6), rng.normal(0, 1, 6)
    m, se, df = inference.t_summary(x[None], y[None], True)
    p = inference.one_sided(m, se, df, margin=0.7)
    assert p["p_better"][0] == pytest.approx(stats.ttest_rel(x, y, alternative="greater").pvalue)
    assert p["p_worse"][0] == pytest.approx(stats.ttest_rel(x, y, alternative="less").pvalue)
    assert p["p_tost"][0] == pytest.approx(ttost_paired(x, y, -0.7, 0.7)[0])
    y5 = y[:5]
    m, se, df = inference.t_summary(x[None], y5[None], False)
    p = inference.one_sided(m, se, df, margin=0.7)
    assert p["p_better"][0] == pytest.approx(stats.ttest_ind(x, y5, equal_var=False, alternative="greater").pvalue)
    assert p["p_tost"][0] == pytest.approx(ttost_ind(x, y5, -0.7, 0.7, usevar="unequal")[0])
    lo, hi = inference.interval(m, se, df, 0.9)
    ci = stats.ttest_ind(x, y5, equal_var=False).confidence_interval(0.9)
    assert (lo[0], hi[0]) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("correction,kind", [("holm", "holm"), ("bonferroni", "bonferroni"), ("none", None)])
def test_local_levels_decide_exactly_as_adjusted_p(correction, kind, monkeypatch):
    import gc

    monkeypatch.setattr(gc, "collect", lambda *a: 0)  # statsmodels' Holm runs gc.collect() on every call (0.1 s)
    rng = np.random.default_rng(0)
    for _ in range(40):
        p = rng.uniform(0, 0.06, rng.integers(1, 12)) ** rng.uniform(0.5, 2)
        lv = inference.holm_levels(p, 0.05, correction)
        adj = multipletests(p, 0.05, kind)[1] if kind else p
        assert np.array_equal(p < lv, adj < 0.05)


def test_bh_levels_match_scipy():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = rng.uniform(0, 0.2, rng.integers(1, 12))
        lv = inference.holm_levels(p, 0.05, "bh")
        assert np.array_equal(p < lv, stats.false_discovery_control(p) <= 0.05)


def test_shown_interval_excludes_zero_exactly_when_the_verdict_is_directional():
    """The verdict's interval (at its row's local Holm level) agrees with the decision on every row."""
    f = sim.selected_frame(12, 6, {"ew": 0.0, "rlw": 0.0, "a": 4.0, "b": -4.0, "c": 0.1}, rng_seed=2, sd=0.5,
                           seed_sd=0.5)
    v = analysis.verdicts(f, against="rlw", reference="ew", margin=1.0)
    assert len(v) == 12 * 4 and set(v["verdict"]) == {"better", "worse", "equivalent", "inconclusive"}
    for r in v.itertuples():
        assert (r.ci_low > 0) == (r.verdict == "better")
        assert (r.ci_high < 0) == (r.verdict == "worse")
        if r.verdict == "equivalent":
            assert -1.0 < r.ci_low and r.ci_high < 1.0
        assert 1 - 2 * 0.05 <= r.ci_level + 1e-12 and "exact" not in r.reason


def test_permutation_batches_equal_scipy_and_bound_memory():
    rng = np.random.default_rng(4)
    d = rng.normal(0.5, 1, (7, 6))
    for alt in ("two-sided", "greater", "less"):
        want = [stats.permutation_test((r,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                       alternative=alt).pvalue for r in d]
        # a tiny element budget forces many chunks of comparisons and resamples: same exact p-values
        assert permutation.sign_flip(d, alternative=alt, max_elements=10) == pytest.approx(want)
    x, y = rng.normal(0.5, 1, (3, 5)), rng.normal(0, 1, (3, 4))
    want = [stats.permutation_test((a, b), lambda a, b: a.mean() - b.mean(), n_resamples=np.inf).pvalue
            for a, b in zip(x, y)]
    assert permutation.two_sample(x, y, max_elements=20) == pytest.approx(want)
    # 200 shared seeds x 500 comparisons (Monte Carlo): valid level, no array above the budget
    big = rng.normal(0, 1, (500, 200))
    p = permutation.sign_flip(big, n_resamples=999, max_elements=200_000)
    assert 0.02 < (p < 0.05).mean() < 0.09 and p.min() >= 1 / 1000


def test_compare_with_200_shared_seeds_and_thousands_of_comparisons_in_bounded_memory(monkeypatch):
    """Issue 13: 200 shared seeds, 1,200 comparisons (100 studies x 3 variants x (3 metrics + Delta-m)), 2,999
    resamples: the permutation test builds its resample matrices in chunks capped by ``max_elements`` (one
    full matrix would be 1,200 x 2,999 floats = 29 MB), and the p-values are valid (about 5% below 0.05
    under no effect)."""
    import tracemalloc
    f = sim.selected_frame(100, 200, {"ew": 0.0, "a": 0.0, "b": 0.0, "c": 0.0}, rng_seed=5)
    peaks, calls = [], []
    real = permutation.sign_flip

    def spy(d, *args, **kwargs):  # memory allocated inside the test itself, beyond its input
        calls.append((d.shape, kwargs.get("max_elements")))
        tracemalloc.start()
        try:
            out = real(d, *args, **kwargs)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        return out

    monkeypatch.setattr(permutation, "sign_flip", spy)
    c = analysis.compare(f, baseline="ew", test="perm", n_resamples=2999, max_elements=100_000)
    assert len(c) == 1200 and c["paired"].all() and set(c["n_method"]) == {200}
    assert calls == [((1200, 200), 100_000)]
    assert max(peaks) < 4e6  # a few chunks of 100,000 floats, not the 29 MB matrix
    assert 0.02 < (c["p_perm"] < 0.05).mean() < 0.09 and c["p_perm"].min() >= 1 / 3000
    # with 200 seeds the permutation p is close to the t-test's
    assert np.abs(c["p_perm"] - c["p_t"]).max() < 0.05


def test_monte_carlo_p_values_depend_on_seed_and_data_only():
    """Random arrangements come in fixed pages: the chunk size and the other comparisons of the call do not
    change a comparison's p-value."""
    rng = np.random.default_rng(8)
    d = rng.normal(0.1, 1, (30, 40))
    ref = permutation.sign_flip(d, 999, np.random.default_rng(1))
    for cap in (300, 10_000, 123_457):
        assert np.array_equal(permutation.sign_flip(d, 999, np.random.default_rng(1), max_elements=cap), ref)
    assert np.array_equal(permutation.sign_flip(d[:3], 999, np.random.default_rng(1)), ref[:3])
    x, y = rng.normal(0.3, 1, (20, 9)), rng.normal(0, 1, (20, 8))
    ref = permutation.two_sample(x, y, 999, np.random.default_rng(2), alternative="greater")
    for cap in (500, 40_000):
        got = permutation.two_sample(x, y, 999, np.random.default_rng(2), alternative="greater", max_elements=cap)
        assert np.array_equal(got, ref)
    assert np.array_equal(permutation.two_sample(x[5:7], y[5:7], 999, np.random.default_rng(2),
                                                 alternative="greater"), ref[5:7])


# ---- simulations (small versions of bench/inference_sims.py) -------------------------------------------

@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_delta_m_interval_reaches_nominal_coverage(seeds):
    """The 95% t interval of Delta-m covers the true value in about 95% of simulated studies from 3
    seeds on (the old percentile bootstrap: 76% at 3 seeds). 150 studies: binomial sd 1.8%."""
    cov = sim.interval_coverage(seeds, n_studies=150, rng_seed=seeds)
    assert 0.9 <= cov <= 0.99


def test_delta_m_interval_coverage_unpaired():
    assert 0.9 <= sim.interval_coverage(4, n_studies=150, paired=False, rng_seed=11) <= 0.99


@pytest.mark.parametrize("kind", ["normal", "t3", "lognormal"])
def test_default_test_size_power_and_interval_coverage(kind):
    """One-sided paired t at alpha = 0.05 on 5 seeds: P(better | no effect) <= alpha (within binomial
    noise, 4,000 draws: sd 0.35%) for normal, heavy-tailed and skewed trial noise; its 90% interval covers;
    with an effect of 2 sd of the differences it says better in most studies."""
    null = sim.directional_rates(5, 0.0, reps=4000, kind=kind, rng_seed=1)
    assert null["better"] <= 0.05 + 0.01 and null["worse"] <= 0.05 + 0.01
    assert null["coverage"] >= 0.9 - 0.015
    assert sim.directional_rates(5, 2.0, reps=4000, kind=kind, rng_seed=2)["better"] > 0.8


def test_tost_size_at_the_margin():
    """P(equivalent) when the true difference sits on the margin stays at or below alpha."""
    r = sim.directional_rates(5, 1.0, reps=4000, margin_sd=1.0, rng_seed=3)
    assert r["equivalent"] <= 0.05 + 0.01


def test_family_correction_keeps_size_and_five_seeds_can_decide():
    """A Holm family of 28 (the quickstart vs EW): with 5 shared seeds the default test still decides a
    large effect (4 sd of the differences) in most studies -- the exact sign-flip test never can."""
    assert sim.directional_rates(5, 0.0, reps=4000, family=28)["better"] <= 0.05 / 28 + 0.003
    assert sim.directional_rates(5, 4.0, reps=2000, family=28)["better"] > 0.5
    assert analysis.power.check_design(5, "perm", family_size=28).possible is False


def test_a_diverged_seed_never_makes_better_more_likely():
    """The real verdict pipeline on 150 simulated studies (5 shared seeds, true +1.5 points, sd 1): the
    method's seed 4 diverging lowers P(better) (scored worst, pairing kept); the baseline's raises it."""
    full = sim.verdict_rates(5, 1.5, n_studies=150, rng_seed=7)
    lost = sim.verdict_rates(5, 1.5, n_studies=150, rng_seed=7, diverged_seed=4)
    base_lost = sim.verdict_rates(5, 1.5, n_studies=150, rng_seed=7, diverged_seed=4, diverged_variant="rlw")
    assert lost["better"] <= full["better"] <= base_lost["better"]
    assert full["better"] > 0.4 and lost["worse"] <= 0.05


def test_verdict_pipeline_size_under_no_effect():
    r = sim.verdict_rates(5, 0.0, n_studies=200, rng_seed=8)
    assert r["better"] <= 0.05 + 0.04 and r["worse"] <= 0.05 + 0.04  # 200 studies: binomial sd 1.5%


def test_bayesian_correlated_t_posterior():
    """Benavoli et al. 2017, rho = 0: with a zero-width ROPE, P(worse) under the non-informative prior equals
    the one-sided p-value of the paired t-test for "better" (scipy); the three probabilities sum to 1 and
    P(equivalent) grows with the margin."""
    from analysis.bayes import posterior
    rng = np.random.default_rng(9)
    x, y = rng.normal(0.5, 1, 6), rng.normal(0, 1, 6)
    m, se, df = inference.t_summary(x[None], y[None], True)
    p0 = posterior(m, se, df, margin=1e-12).iloc[0]
    assert p0["bayes_p_worse"] == pytest.approx(stats.ttest_rel(x, y, alternative="greater").pvalue)
    wide = posterior(m, se, df, margin=1.0).iloc[0]
    assert wide[["bayes_p_better", "bayes_p_equivalent", "bayes_p_worse"]].sum() == pytest.approx(1.0)
    assert wide["bayes_p_equivalent"] > p0["bayes_p_equivalent"]
    f = sim.selected_frame(3, 5, {"ew": 0.0, "rlw": 0.0, "big": 5.0}, rng_seed=3, sd=0.5)
    v = analysis.verdicts(f, against="rlw", reference="ew", bayes=True)
    big = v[v["variant"] == "big"]
    assert (big["bayes_p_better"] > 0.9).all() and {"bayes_p_equivalent", "bayes_p_worse"} <= set(v.columns)
