"""Verdicts and pairing on synthetic data built to produce each answer.

Every cell has 12 seeds. The seeds carry a large effect shared by every method (as in a real study,
where a seed fixes the initialisation, the data order and the random weights of all methods), so
only a paired comparison can see a small but consistent difference. Expected labels follow from the
construction: a method 4 Delta-m points above RLW on every seed is ``better``, 4 below ``worse``,
0.2 above with tiny noise (inside the 0.5-point margin, yet significant) ``equivalent``, and one
whose seed differences are pure noise of 4 points ``inconclusive``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis

SEEDS = list(range(12))
RNG = np.random.default_rng(2026)
SEED_EFFECT = 0.05 * RNG.standard_normal(len(SEEDS))  # shared by all methods: 10 Delta-m points of sd
BASE = 0.5


def _rows(variant: str, values, seeds=SEEDS, task: str = "t", metric: str = "acc", hib: bool = True) -> list[dict]:
    method, _, dist = variant.partition(":")
    return [{"trial_id": f"{variant}-{s}", "dataset": "d", "arch": "hps", "variant": variant, "method": method,
             "distribution": dist or None, "seed": s, "task": task, "metric": metric, "higher_is_better": hib,
             "value": float(v)} for s, v in zip(seeds, values)]


def _selected(method_values, method_seeds=SEEDS, hib: bool = True) -> pd.DataFrame:
    """A selected frame (one value per trial): EW, RLW (EW + tiny noise) and the method ``m``."""
    sign = 1.0 if hib else -1.0
    ew = BASE + sign * SEED_EFFECT
    rlw = ew + _noise(0.001, 0)
    metric = "acc" if hib else "err"
    rows = (_rows("ew", ew, metric=metric, hib=hib) + _rows("rlw:normal", rlw, metric=metric, hib=hib)
            + _rows("m", method_values(rlw), method_seeds, metric=metric, hib=hib))
    return pd.DataFrame(rows)


def _verdict(sel: pd.DataFrame, **kw) -> pd.Series:
    v = analysis.verdicts(sel, against="rlw", reference="ew", margin=0.5, **kw)
    return v[v["variant"] == "m"].iloc[0]


def _noise(sd: float, seed: int) -> np.ndarray:
    return sd * np.random.default_rng(seed).standard_normal(len(SEEDS))


TESTS = ("t", "perm")


@pytest.mark.parametrize("test", TESTS)
def test_better_and_worse_by_four_points(test: str) -> None:
    better = _verdict(_selected(lambda rlw: rlw + 0.02 + _noise(0.002, 1)), test=test)  # +0.02 / 0.5 = +4 points
    assert better["verdict"] == "better" and better["paired"]
    assert better["diff_delta_m"] == pytest.approx(4.0, abs=0.3)
    assert better["ci_low"] > 0
    worse = _verdict(_selected(lambda rlw: rlw - 0.02 + _noise(0.002, 1)), test=test)
    assert worse["verdict"] == "worse" and worse["diff_delta_m"] == pytest.approx(-4.0, abs=0.3)
    assert worse["ci_high"] < 0
    # the reason states the interval and its side (what a reader checks the label against)
    assert f"[{better['ci_low']:+.3g}, {better['ci_high']:+.3g}] above 0" in better["reason"]
    assert f"[{worse['ci_low']:+.3g}, {worse['ci_high']:+.3g}] below 0" in worse["reason"]


@pytest.mark.parametrize("test", TESTS)
def test_lower_is_better_metric_keeps_the_direction(test: str) -> None:
    # an error metric: the method's errors are lower by 4%, so it is better
    v = _verdict(_selected(lambda rlw: rlw - 0.02 + _noise(0.002, 2), hib=False), test=test)
    assert v["verdict"] == "better" and v["diff_delta_m"] == pytest.approx(4.0, abs=0.3)
    v = _verdict(_selected(lambda rlw: rlw + 0.02 + _noise(0.002, 2), hib=False), test=test)
    assert v["verdict"] == "worse"


@pytest.mark.parametrize("test", TESTS)
def test_significant_but_negligible_difference_is_equivalent(test: str) -> None:
    v = _verdict(_selected(lambda rlw: rlw + 0.001 + _noise(0.0001, 3)), test=test)  # +0.2 points, margin 0.5
    assert v["diff_delta_m"] == pytest.approx(0.2, abs=0.05)
    assert v["p_better_adj"] < 0.05, "the construction must make the difference significant"
    assert v["verdict"] == "equivalent" and "significant" in v["reason"]
    assert -0.5 < v["ci_low"] and v["ci_high"] < 0.5


@pytest.mark.parametrize("test", TESTS)
def test_noise_only_is_inconclusive(test: str) -> None:
    v = _verdict(_selected(lambda rlw: rlw + _noise(0.02, 4)), test=test)  # seed differences of 4 points sd
    assert v["verdict"] == "inconclusive"
    assert v["ci_low"] < 0 < v["ci_high"] and (v["ci_low"] < -0.5 or v["ci_high"] > 0.5)


def test_equivalence_needs_enough_precision_not_just_a_small_mean() -> None:
    # the same +0.2 points as the equivalent case, but seed noise of 2 points: not shown to be within the margin
    v = _verdict(_selected(lambda rlw: rlw + 0.001 + _noise(0.01, 5)))
    assert v["verdict"] == "inconclusive"


# --- pairing ----------------------------------------------------------------------------------------
def test_shared_seeds_are_paired_and_pairing_decides() -> None:
    """+2 points on every seed under 10 points of shared seed noise: only the paired test sees it."""
    sel = _selected(lambda rlw: rlw + 0.01 + _noise(0.001, 6))
    rlw = sel[sel["variant"] == "rlw:normal"].sort_values("seed")["value"].to_numpy()
    m = sel[sel["variant"] == "m"].sort_values("seed")["value"].to_numpy()
    cmp = analysis.compare(sel, baseline="rlw", reference="ew")
    row = cmp[(cmp["variant"] == "m") & (cmp["task"] == "delta_m")].iloc[0]
    assert bool(row["paired"])
    # Delta-m is an affine map of the value (same scale for both): the t statistics are those of the values
    assert row["p_t"] == pytest.approx(stats.ttest_rel(m, rlw).pvalue, rel=1e-6)
    assert stats.ttest_ind(m, rlw, equal_var=False).pvalue > 0.3  # unpaired, the effect is invisible
    for test in TESTS:
        v = _verdict(sel, test=test)
        assert v["verdict"] == "better" and bool(v["paired"])


def test_different_seeds_are_not_paired() -> None:
    """The same values on seeds 100..111: nothing to pair, Welch's test, and no verdict from the shared noise."""
    sel = _selected(lambda rlw: rlw + 0.01 + _noise(0.001, 6), method_seeds=[100 + s for s in SEEDS])
    rlw = sel[sel["variant"] == "rlw:normal"].sort_values("seed")["value"].to_numpy()
    m = sel[sel["variant"] == "m"].sort_values("seed")["value"].to_numpy()
    cmp = analysis.compare(sel, baseline="rlw", reference="ew")
    row = cmp[(cmp["variant"] == "m") & (cmp["task"] == "delta_m")].iloc[0]
    assert not bool(row["paired"])
    assert row["p_t"] == pytest.approx(stats.ttest_ind(m, rlw, equal_var=False).pvalue, rel=1e-6)
    v = _verdict(sel)
    assert v["verdict"] == "inconclusive" and not bool(v["paired"])


def test_partly_shared_seeds_are_paired_on_the_common_ones() -> None:
    seeds = SEEDS[:-1] + [99]  # 11 shared seeds, one not
    sel = _selected(lambda rlw: rlw + 0.01 + _noise(0.001, 6), method_seeds=seeds)
    rlw = sel[sel["variant"] == "rlw:normal"].sort_values("seed")["value"].to_numpy()[:-1]
    m = sel[sel["variant"] == "m"].sort_values("seed")["value"].to_numpy()[:-1]
    cmp = analysis.compare(sel, baseline="rlw", reference="ew")
    row = cmp[(cmp["variant"] == "m") & (cmp["task"] == "delta_m")].iloc[0]
    assert bool(row["paired"]) and row["n_unmatched"] == 2 and row["n_method"] == 11
    assert row["p_t"] == pytest.approx(stats.ttest_rel(m, rlw).pvalue, rel=1e-6)


def test_two_seeds_decide_one_seed_cannot() -> None:
    """The '2 seeds per side' floor, on both sides: 2 seeds of a +10-point effect with tiny noise are enough for
    the t test; 1 seed is inconclusive and says why."""
    big = lambda rlw: rlw + 0.05 + _noise(0.0005, 8)  # noqa: E731
    two = _verdict(_selected(big, method_seeds=SEEDS[:2]))
    assert two["verdict"] == "better" and two["n_method"] == 2
    one = _verdict(_selected(big, method_seeds=SEEDS[:1]))
    assert one["verdict"] == "inconclusive" and "2 seeds" in one["reason"]
    # the baseline side: RLW on 2 seeds, then on 1
    sel = _selected(big)
    for n, label in ((2, "better"), (1, "inconclusive")):
        keep = (sel["variant"] != "rlw:normal") | (sel["seed"] < n)
        v = _verdict(sel[keep])
        assert v["verdict"] == label and v["n_baseline"] == n, (n, v["reason"])
