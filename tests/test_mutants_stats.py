"""analysis/stats.py beyond the scipy checks (mutation testing, docs/testing.md): how units are aligned and
paired (by replicate and seed, by seed when one side is untuned), the numbers ``run_tests`` and ``compare``
report next to the p-values, ties and chunks in A12, each correction, and bad arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

import analysis
from analysis.errors import AnalysisError
from analysis.stats import _align, correct, pair_arrays, run_tests


def test_align_pairs_by_replicate_and_seed() -> None:
    sx, x = [(0, 1), (0, 2), (0, 3), (1, 1)], [10.0, 20.0, 30.0, 40.0]
    sy, y = [(0, 2), (0, 3), (0, 4), (1, 1)], [2.0, 3.0, 4.0, 5.0]
    a, b, labels, dropped = _align(sx, x, sy, y)
    assert (a, b, labels, dropped) == ([20.0, 30.0, 40.0], [2.0, 3.0, 5.0], [0, 0, 1], 2)


def test_align_an_untuned_side_pairs_by_seed() -> None:
    # the method has 2 tuning replicates on seeds 1, 2; the baseline one (replicate 0) on seeds 1, 2, 3
    sx, x = [(0, 1), (0, 2), (1, 1), (1, 2)], [1.0, 2.0, 3.0, 4.0]
    sy, y = [(0, 1), (0, 2), (0, 3)], [10.0, 20.0, 30.0]
    assert _align(sx, x, sy, y) == ([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 10.0, 20.0], [0, 0, 1, 1], 1)
    # the mirror: the baseline has the replicates; outputs stay (method, baseline)
    assert _align(sy, y, sx, x) == ([10.0, 20.0, 10.0, 20.0], [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], 1)
    # both sides with several (different) replicates: no seed-only matching
    sz = [(2, 1), (2, 2), (3, 1), (3, 2)]
    assert _align(sx, x, sz, y + [40.0]) == ([], [], [], 8)


def _values(variant_seeds: dict[str, list[int]], values: dict[str, list[float]], hib: bool = True,
            datasets: tuple[str, ...] = ("d",)) -> pd.DataFrame:
    rows = []
    for ds in datasets:
        for v, seeds in variant_seeds.items():
            for s, val in zip(seeds, values[v]):
                rows.append({"dataset": ds, "arch": "hps", "variant": v, "task": "t", "metric": "acc",
                             "higher_is_better": hib, "replicate": 0, "seed": s, "value": val,
                             "imputed": val < 0})
    return pd.DataFrame(rows)


def test_pair_arrays_pairs_two_common_seeds_else_not() -> None:
    v = _values({"rlw:normal": [1, 2, 3], "a": [3, 2, 1], "b": [3, 9], "c": [7, 8, 9]},
                {"rlw:normal": [1.0, 2.0, 3.0], "a": [13.0, 12.0, -11.0], "b": [5.0, 6.0], "c": [4.0, 5.0, 6.0]})
    p = pair_arrays(v, "rlw").set_index("variant")
    assert list(p.index) == ["a", "b", "c"]
    a = p.loc["a"]
    assert (a["x"], a["y"], bool(a["paired"]), a["n_unmatched"]) == ([-11.0, 12.0, 13.0], [1.0, 2.0, 3.0], True, 0)
    assert (a["n_method"], a["n_baseline"], a["n_imputed_method"], a["n_imputed_baseline"]) == (3, 3, 1, 0)
    assert a["baseline"] == "rlw:normal" and a["replicates"] == 1 and a["clusters"] == [0, 0, 0]
    b = p.loc["b"]  # one common seed: unpaired on all units
    assert (b["x"], b["y"], bool(b["paired"]), b["n_unmatched"]) == ([5.0, 6.0], [1.0, 2.0, 3.0], False, 0)
    assert (b["n_method"], b["n_baseline"]) == (2, 3)
    assert b["clusters"] == [0, 0] and b["replicates"] == 1  # one tuning replicate, not one per seed
    c = p.loc["c"]
    assert not bool(c["paired"]) and c["x"] == [4.0, 5.0, 6.0]


def test_pair_arrays_baseline_absent() -> None:
    v = _values({"ew": [1, 2], "a": [1, 2]}, {"ew": [1.0, 2.0], "a": [2.0, 3.0]}, datasets=("d", "e"))
    with pytest.raises(AnalysisError, match="baseline 'rlw' is absent from dataset 'd'"):
        pair_arrays(v, "rlw")
    without: list[str] = []
    assert pair_arrays(v, "rlw", datasets_without=without).empty and without == ["d", "e"]


def test_pair_arrays_against_one_baseline_architecture() -> None:
    v = _values({"ew": [1, 2], "a": [1, 2]}, {"ew": [1.0, 2.0], "a": [2.0, 4.0]})
    v2 = v.assign(arch="mtan", value=v["value"] * 10)
    p = pair_arrays(pd.concat([v, v2], ignore_index=True), "ew", baseline_arch="hps")
    got = {(r.arch, r.variant): (r.x, r.y) for r in p.itertuples()}
    assert got == {("hps", "a"): ([2.0, 4.0], [1.0, 2.0]), ("mtan", "a"): ([20.0, 40.0], [1.0, 2.0]),
                   ("mtan", "ew"): ([10.0, 20.0], [1.0, 2.0])}
    # the baseline ran on another architecture only: it is absent from the baseline architecture's variants
    only_mtan = pd.concat([v[v["variant"] == "a"], v2], ignore_index=True)
    with pytest.raises(AnalysisError, match="baseline 'ew' is absent from dataset 'd'"):
        pair_arrays(only_mtan, "ew", baseline_arch="hps")
    without: list[str] = []
    assert pair_arrays(only_mtan, "ew", baseline_arch="hps", datasets_without=without).empty and without == ["d"]


def _pairs(x, y, hib=True, paired=False, task="t"):
    return pd.DataFrame({"x": [list(x)], "y": [list(y)], "higher_is_better": [hib], "paired": [paired],
                         "n_method": [len(x)], "n_baseline": [len(y)], "task": [task]})


def test_run_tests_means_and_relative_improvement() -> None:
    r = run_tests(_pairs([2.0, 3.0, 4.0], [4.0, 4.0, 5.0, 3.0], hib=False)).iloc[0]
    assert (r["mean_method"], r["mean_baseline"], r["diff"]) == pytest.approx((3.0, 4.0, -1.0))
    assert r["rel_improvement_pct"] == pytest.approx(25.0)  # 1 lower than 4, lower is better
    up = run_tests(_pairs([2.0, 3.0, 4.0], [-4.0, -4.0, -5.0, -3.0])).iloc[0]
    assert up["rel_improvement_pct"] == pytest.approx(100 * 7.0 / 4.0)  # |mean_baseline| in the denominator
    assert np.isnan(run_tests(_pairs([2.0, 3.0], [1.0, 2.0], task="delta_m")).iloc[0]["rel_improvement_pct"])


def test_run_tests_one_unit_gives_no_test_but_effect_sizes() -> None:
    r = run_tests(_pairs([2.0], [1.0, 3.0, 4.0])).iloc[0]
    for c in ("p_t", "ci_low", "ci_high", "p_perm", "hedges_g"):
        assert np.isnan(r[c]), c
    assert r["a12"] == pytest.approx(1 / 3)
    empty = run_tests(_pairs([], [1.0, 2.0])).iloc[0]
    assert np.isnan(empty["a12"]) and np.isnan(empty["mean_method"])


def test_a12_counts_ties_as_half_and_is_direction_aware() -> None:
    x, y = [1.0, 2.0, 2.0, 3.0], [2.0, 2.0, 0.0]
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))
    assert run_tests(_pairs(x, y)).iloc[0]["a12"] == pytest.approx(wins)
    assert run_tests(_pairs(x, y, hib=False)).iloc[0]["a12"] == pytest.approx(1 - wins)
    assert run_tests(_pairs(x, y, hib=False)).iloc[0]["hedges_g"] == pytest.approx(
        -run_tests(_pairs(x, y)).iloc[0]["hedges_g"])


def test_a12_in_chunks_equals_one_block() -> None:
    rng = np.random.default_rng(0)
    n = 1500  # 2e6 / n^2 < 1: one comparison per chunk
    frames = [_pairs(rng.normal(size=n).round(1), rng.normal(0.1, size=n).round(1)) for _ in range(3)]
    res = run_tests(pd.concat(frames, ignore_index=True), n_resamples=99, permutation_test=False)
    for k, f in enumerate(frames):
        x, y = np.array(f["x"].iloc[0]), np.array(f["y"].iloc[0])
        want = ((x[:, None] > y[None, :]).mean() + 0.5 * (x[:, None] == y[None, :]).mean())
        assert res["a12"].iloc[k] == pytest.approx(want)
    assert res["p_perm"].isna().all() and res["p_t"].notna().all()


def test_run_tests_confidence_and_one_block_per_shape() -> None:
    x1, y1 = [1.0, 2.0, 4.0], [0.0, 1.0, 1.5]
    x2, y2 = [5.0, 4.0, 6.5], [3.0, 3.5, 2.0]
    x3, y3 = [1.0, 1.5], [0.5, 0.0, 0.2]
    pairs = pd.concat([_pairs(x1, y1, paired=True), _pairs(x2, y2, paired=True), _pairs(x3, y3)], ignore_index=True)
    r = run_tests(pairs, confidence=0.9)
    for k, (x, y) in enumerate(((x1, y1), (x2, y2))):
        t = stats.ttest_rel(x, y)
        ci = t.confidence_interval(0.9)
        assert (r["p_t"].iloc[k], r["ci_low"].iloc[k], r["ci_high"].iloc[k]) == pytest.approx((t.pvalue, ci.low,
                                                                                                ci.high))
    w = stats.ttest_ind(x3, y3, equal_var=False)
    assert r["p_t"].iloc[2] == pytest.approx(w.pvalue)
    assert r["ci_low"].iloc[2] == pytest.approx(w.confidence_interval(0.9).low)


def test_permutation_p_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=20), rng.normal(0.3, size=20)
    a = run_tests(_pairs(x, y), n_resamples=500, seed=3).iloc[0]["p_perm"]
    assert a == run_tests(_pairs(x, y), n_resamples=500, seed=3).iloc[0]["p_perm"]
    assert a != run_tests(_pairs(x, y), n_resamples=500, seed=4).iloc[0]["p_perm"]
    exact = stats.permutation_test((x, y), lambda u, v: np.mean(u) - np.mean(v), n_resamples=20000,
                                   random_state=0).pvalue
    assert a == pytest.approx(exact, abs=0.06)


@pytest.mark.parametrize("method,kind", [("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh"),
                                         ("fdr_bh", "fdr_bh")])
def test_each_correction_matches_statsmodels(method: str, kind: str) -> None:
    p = pd.Series([0.01, np.nan, 0.04, 0.03, 0.2, 0.001], index=list("abcdef"))
    out = correct(p, method)
    assert list(out.index) == list("abcdef") and np.isnan(out["b"])
    assert out.drop("b").to_numpy() == pytest.approx(multipletests(p.drop("b").to_numpy(), method=kind)[1])


def test_no_correction_and_errors() -> None:
    p = pd.Series([0.01, np.nan, 0.04])
    out = correct(p, "none")
    assert out.iloc[0] == 0.01 and np.isnan(out.iloc[1]) and out.iloc[2] == 0.04
    assert correct(pd.Series([np.nan, np.nan]), "holm").isna().all()
    with pytest.raises(AnalysisError, match=r"correction must be one of \['bh', 'bonferroni', 'fdr_bh', 'holm', "
                                            r"'none'\], got 'sidak'"):
        correct(p, "sidak")


# --- compare --------------------------------------------------------------------------------------------------
def _selected(effects: dict[str, float], seeds=range(5), datasets=("d",)) -> pd.DataFrame:
    noise = [0.3, -0.2, 0.5, -0.4, 0.1, -0.3, 0.2]
    own = {"ew": [0.0] * 7, "rlw:normal": [0.05, -0.05, 0.0, 0.1, -0.1, 0.0, 0.02],
           "a": [0.1, -0.1, 0.2, 0.0, -0.2, 0.05, 0.0], "b": [0.9, -1.5, 0.3, 1.2, -0.6, 0.0, 0.4]}
    rows = []
    for ds in datasets:
        for variant, eff in effects.items():
            method, _, dist = variant.partition(":")
            for i, s in enumerate(seeds):
                for task, metric, hib, base in (("t", "acc", True, 0.5), ("u", "err", False, 0.2)):
                    sign = 1 if hib else -1
                    rows.append({"trial_id": f"{ds}-{variant}-{s}", "dataset": ds, "arch": "hps",
                                 "variant": variant, "method": method, "distribution": dist or None, "seed": s,
                                 "task": task, "metric": metric, "higher_is_better": hib,
                                 "value": base * (1 + sign * (eff + noise[i] + own[variant][i]) / 100)})
    return pd.DataFrame(rows)


def test_compare_columns_and_corrections_per_test() -> None:
    sel = _selected({"ew": 0.0, "rlw:normal": 0.0, "a": 2.0, "b": 0.0})
    c = analysis.compare(sel, baseline="rlw", reference="ew", n_resamples=999, correction="bonferroni")
    assert len(c) == 3 * 3 and set(c["task"]) == {"t", "u", "delta_m"}
    assert set(c["reference"]) == {"ew"} and set(c["test"]) == {"t"}
    assert c["family_size"].iloc[0] == 9
    assert c["p_t_adj"].to_numpy() == pytest.approx(np.minimum(1, c["p_t"].to_numpy() * 9))
    assert c["p_perm_adj"].to_numpy() == pytest.approx(np.minimum(1, c["p_perm"].to_numpy() * 9))
    assert c["p_adj"].to_numpy() == pytest.approx(c["p_t_adj"].to_numpy())
    assert "sx" not in c.columns and "sy" not in c.columns and len(c.attrs["units"]) == 20
    perm = analysis.compare(sel, baseline="rlw", reference="ew", n_resamples=999, test="perm",
                            permutation_test=False)
    assert perm["p_adj"].to_numpy() == pytest.approx(perm["p_perm_adj"].to_numpy())
    assert perm["p_perm"].notna().all() and set(perm["test"]) == {"perm"}
    nop = analysis.compare(sel, baseline="rlw", reference="ew", permutation_test=False)
    assert nop["p_perm"].isna().all() and nop["p_t"].notna().all()
    # the reference defaults to the baseline: Delta-m against RLW's means
    own = analysis.compare(sel, baseline="rlw")
    assert set(own["reference"]) == {"rlw"}
    d = own[(own["task"] == "delta_m") & (own["variant"] == "a")].iloc[0]
    assert np.mean(d["y"]) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(AnalysisError, match=r"test must be one of \['perm', 't'\], got 'z'"):
        analysis.compare(sel, test="z")


def test_compare_skip_missing_and_a_failed_trial() -> None:
    sel = _selected({"ew": 0.0, "rlw:normal": 0.0, "a": 2.0}, datasets=("d",))
    other = _selected({"ew": 0.0, "a": 2.0}, datasets=("e",))
    both = pd.concat([sel, other], ignore_index=True)
    c = analysis.compare(both, baseline="rlw", reference="ew", skip_missing=True)
    assert set(c["dataset"]) == {"d"} and c.attrs["skipped"] == ["e"]
    assert set(c.attrs["units"]["dataset"]) == {"d"}
    empty = analysis.compare(other, baseline="rlw", reference="ew", skip_missing=True)
    assert empty.empty and empty.attrs["skipped"] == ["e"]
    noref = analysis.compare(both.assign(), baseline="ew", reference="rlw", skip_missing=True)
    assert set(noref["dataset"]) == {"d"}
    with pytest.raises(AnalysisError):
        analysis.compare(both, baseline="rlw", reference="ew")
