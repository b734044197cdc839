"""Group-sequential verdicts (analysis/sequential.py): boundaries, error control, early decisions, seeds saved.

Simulations use normal per-seed differences with sd 1 (effects in sd units); numbers in
docs/statistics.md come from `python bench/sequential.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.sequential import (Design, DesignError, State, boundaries, check_sequential_design, decide,
                                 fixed_seeds_for_power, simulate, t_thresholds)

ALPHA, FAMILY, MARGIN = 0.05, 10, 0.5
DESIGN = Design(5, 5, 25, ALPHA, FAMILY)  # Pocock-type spending, looks at 5, 10, 15, 20, 25 seeds


def test_z_boundaries_match_published_tables():
    # Lan-DeMets spending, 5 equally spaced looks, one-sided 0.025 (Jennison & Turnbull 2000, Table 7.6
    # and the O'Brien-Fleming-type values of Lan & DeMets 1983)
    obf = boundaries(np.arange(1, 6) / 5, 0.025, "obf")
    assert obf == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=2e-3)
    pocock = boundaries(np.arange(1, 6) / 5, 0.025, "pocock")
    assert pocock == pytest.approx([2.438, 2.427, 2.410, 2.397, 2.386], abs=2e-3)
    assert boundaries([1.0], 0.025)[0] == pytest.approx(1.95996, abs=1e-4)  # one look: the fixed test


def test_t_thresholds_approach_z_boundaries_with_many_seeds_and_exceed_them_with_few():
    z = boundaries(np.arange(1, 5) / 4, 0.025, "pocock")
    t_large = t_thresholds([150, 300, 450, 600], 0.025, "pocock", paths=100_000)
    assert t_large == pytest.approx(z, abs=0.06)
    t_small = t_thresholds([5, 10, 15, 20], 0.025, "pocock")
    assert np.all(t_small > z)  # heavier tails on 4, 9, ... degrees of freedom
    assert t_small[0] > 3.0


def test_each_side_holds_its_level_under_the_null():
    # 60,000 null comparisons at one-sided 0.025 per side (family of one)
    states, used = simulate(Design(5, 5, 25, ALPHA, 1), np.zeros(20), 1.0, MARGIN, 3000, seed=101)
    se = math.sqrt(0.025 * 0.975 / states.size)
    assert np.mean(states == "better") <= 0.025 + 2.5 * se
    assert np.mean(states == "worse") <= 0.025 + 2.5 * se
    assert np.mean(states == "better") >= 0.025 - 4 * se  # not wastefully conservative either


def test_familywise_error_at_most_alpha_across_simulated_studies():
    n = 2000
    se = math.sqrt(ALPHA * (1 - ALPHA) / n)
    # all ten effects zero: a "better" or "worse" anywhere is a false claim
    states, _ = simulate(DESIGN, np.zeros(FAMILY), 1.0, MARGIN, n, seed=7)
    fwer_zero = np.mean(((states == "better") | (states == "worse")).any(axis=1))
    assert fwer_zero <= ALPHA + 2 * se
    # all ten effects at the margin: "equivalent" or "worse" is false
    states, _ = simulate(DESIGN, np.full(FAMILY, MARGIN), 1.0, MARGIN, n, seed=8)
    fwer_margin = np.mean(((states == "equivalent") | (states == "worse")).any(axis=1))
    assert fwer_margin <= ALPHA + 2 * se


def test_large_effects_are_decided_at_start():
    states, used = simulate(DESIGN, np.full(FAMILY, 5.0), 1.0, MARGIN, 1000, seed=9)
    assert np.mean((states == "better") & (used == DESIGN.start)) >= 0.85
    states, used = simulate(DESIGN, np.full(FAMILY, -5.0), 1.0, MARGIN, 1000, seed=10)
    assert np.mean((states == "worse") & (used == DESIGN.start)) >= 0.85


def test_fewer_seeds_than_a_fixed_design_with_the_same_power():
    states, _ = simulate(DESIGN, np.full(FAMILY, 1.0), 1.0, MARGIN, 1500, seed=11)
    power = float(np.mean(states == "better"))
    assert power >= 0.8
    n_fixed = fixed_seeds_for_power(1.0, 1.0, ALPHA / (2 * FAMILY), power)
    mixture = np.array([5.0, 5.0, 3.0, 2.0, 1.0, 1.0, 0.5, 0.0, 0.0, -3.0])
    _, used = simulate(DESIGN, mixture, 1.0, MARGIN, 1500, seed=12)
    assert used.sum(axis=1).mean() < 0.8 * n_fixed * FAMILY
    # the seeds go to the close comparisons: the 5-sd ones stop early, the near-zero ones run on
    per_cell = used.mean(axis=0)
    assert per_cell[0] < 6 and per_cell[7] > 20


def test_decide_one_comparison_names_the_boundary():
    rng = np.random.default_rng(0)
    state, crossed = decide(5.0 + rng.normal(0, 1, 5), 0, DESIGN, MARGIN)
    assert state is State.BETTER and crossed.startswith("t ") and " > " in crossed
    state, crossed = decide(rng.normal(0, 1, 5), 0, DESIGN, MARGIN)
    assert state is State.CONTINUE and crossed == ""
    state, _ = decide(rng.normal(0, 1, 25), 4, DESIGN, MARGIN)
    assert state in (State.CAPPED, State.EQUIVALENT)
    with pytest.raises(DesignError, match="plans 10 seeds"):
        decide(np.zeros(7), 1, DESIGN, MARGIN)


def test_design_errors_name_the_field_and_the_smallest_workable_value():
    assert check_sequential_design(5, 5, 30, "decided", family=FAMILY).looks == [5, 10, 15, 20, 25, 30]
    assert check_sequential_design(5, 4, 15, "decided").looks == [5, 9, 13, 15]
    with pytest.raises(DesignError, match=r"final\.seeds\.max: must be >= start \(5\), got 3; .* 5"):
        check_sequential_design(5, 5, 3, "decided")
    with pytest.raises(DesignError, match=r"final\.seeds\.step: must be >= 1 .* 1"):
        check_sequential_design(5, 0, 30, "decided")
    with pytest.raises(DesignError, match=r"final\.seeds\.until: .*'always'"):
        check_sequential_design(5, 5, 30, "always")
    with pytest.raises(DesignError, match=r"final\.seeds\.start: expected an integer"):
        check_sequential_design("5", 5, 30, "decided")
    # an exact sign-flip test on n pairs cannot go below 1/2^n one-sided: with 10 comparisons at
    # alpha 0.05 it needs 1/2^n < 0.0025, so n >= 9
    with pytest.raises(DesignError, match=r"final\.seeds\.start: .* smallest workable start is 9"):
        check_sequential_design(5, 5, 30, "decided", family=FAMILY, test="perm")
    assert check_sequential_design(9, 5, 30, "decided", family=FAMILY, test="perm").start == 9
