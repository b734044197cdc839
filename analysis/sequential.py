"""Group-sequential verdicts: stop a comparison when it is decided, add seeds where it is not.

A comparison (a variant against a baseline, on paired per-seed Delta-m
differences) is looked at after ``start``, ``start + step``, ... shared seeds,
up to ``max``. Error control under this optional stopping comes from an
alpha-spending function planned before any data (Lan & DeMets, Biometrika
1983): the cumulative one-sided error spent by information fraction
``t = n_k / n_max`` is

* Pocock type (default; Pocock, Biometrika 1977; Lan & DeMets' form):
  ``alpha(t) = alpha log(1 + (e - 1) t)``, which spends evenly enough that a
  large effect is decided at the first look;
* O'Brien-Fleming type (O'Brien & Fleming, Biometrics 1979):
  ``alpha(t) = 2 (1 - Phi(z_{1 - alpha/2} / sqrt(t)))``, which spends almost
  nothing early. With litmus's designs (t statistics on 4 degrees of freedom at
  the first look, Bonferroni over 10+ comparisons) it spends under 1e-6 at the
  first look and never decides at ``start``, even a 5-sd effect
  (docs/statistics.md has the numbers).

The critical values per look of a standardised statistic with independent
increments (known variance) follow by recursive numerical integration over
the continuation region (Armitage, McPherson & Rowe 1969; Jennison &
Turnbull, *Group Sequential Methods*, 2000, ch. 19): :func:`boundaries`.
litmus's statistic is the paired t on few seeds, for which converting those z
boundaries through nominal p-values exceeds the level (about 6% at 4 degrees
of freedom), so the thresholds it applies (:func:`t_thresholds`) spend the same
alpha on the t statistic itself, computed from seeded null paths.
Superiority uses two one-sided boundaries (better, worse),
each at ``alpha / (2 F)``; equivalence is two one-sided tests (TOST,
Schuirmann 1987) against ``[-margin, +margin]`` with their own spending at
``alpha / F``; F is the family size (Bonferroni: valid whatever the
dependence between comparisons and whatever the stopping). The type-I errors
and the seeds saved are checked by simulation (tests/test_sequential.py;
numbers in docs/statistics.md from ``python bench/sequential.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import optimize, stats

from litmus.errors import DesignError  # noqa: F401 - part of this module's interface

from .schema import DECISION_SCHEMA, DECISIONS_DIR

SPENDING = ("obf", "pocock")
_GRID = 1201  # grid points of the continuation density per look


class State(str, Enum):
    """Where a sequential comparison stands after a look."""

    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    CONTINUE = "continue"
    CAPPED = "capped"  # reached ``max`` seeds undecided: inconclusive

    @property
    def decided(self) -> bool:
        return self in (State.BETTER, State.WORSE, State.EQUIVALENT)


@dataclass(frozen=True)
class Design:
    """Planned looks: ``start`` shared seeds, then ``step`` more per round, up to ``max``."""

    start: int
    step: int
    max: int
    alpha: float = 0.05
    family: int = 1
    spending: str = "pocock"

    @property
    def looks(self) -> list[int]:
        """Seeds at each look: start, start + step, ..., max (the last look is always ``max``)."""
        ns = list(range(self.start, self.max + 1, self.step))
        if ns[-1] != self.max:
            ns.append(self.max)
        return ns

    @property
    def fractions(self) -> np.ndarray:
        return np.asarray(self.looks, float) / self.max


def spent(t: np.ndarray | float, alpha: float, kind: str = "obf") -> np.ndarray:
    """Cumulative one-sided alpha spent by information fraction ``t`` (Lan-DeMets)."""
    t = np.clip(np.asarray(t, float), 0.0, 1.0)
    if kind == "obf":
        with np.errstate(divide="ignore"):
            return np.where(t > 0, 2.0 * stats.norm.sf(stats.norm.isf(alpha / 2.0) / np.sqrt(np.maximum(t, 1e-300))), 0.0)
    if kind == "pocock":
        return alpha * np.log1p((math.e - 1.0) * t)
    raise DesignError(f"spending must be one of {SPENDING}, got {kind!r}")


def boundaries(fractions: np.ndarray | list[float], alpha: float, kind: str = "obf") -> np.ndarray:
    """One-sided upper critical values ``b_k`` (z scale) so that, under the null, the chance of
    crossing first at look k is ``spent(t_k) - spent(t_{k-1})``.

    The score ``S_k = Z_k sqrt(t_k)`` is Brownian motion in information time; its density on the
    continuation region is propagated from look to look on a grid (trapezoid rule).
    """
    t = np.asarray(fractions, float)
    if t.ndim != 1 or len(t) == 0 or np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1 + 1e-12:
        raise DesignError(f"information fractions must increase within (0, 1], got {t.tolist()}")
    cum = spent(t, alpha, kind)
    inc = np.diff(np.concatenate([[0.0], cum]))
    out = np.empty(len(t))
    out[0] = stats.norm.isf(inc[0]) if inc[0] > 0 else np.inf
    # density of S_1 on the continuation region (-8 sqrt(t1), b1 sqrt(t1))
    grid, dens = _continuation(None, None, t[0], out[0], 0.0)
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        sd = math.sqrt(dt)

        def cross(b: float) -> float:
            return float(np.trapezoid(dens * stats.norm.sf((b * math.sqrt(t[k]) - grid) / sd), grid))

        target = inc[k]
        if target <= 1e-15:
            out[k] = np.inf
        else:
            hi = 12.0
            if cross(hi) > target:
                out[k] = hi
            else:
                out[k] = optimize.brentq(lambda b: cross(b) - target, -12.0, hi, xtol=1e-10)
        grid, dens = _continuation(grid, dens, t[k], out[k], t[k - 1])
    return out


def _continuation(grid: np.ndarray | None, dens: np.ndarray | None, t: float, b: float,
                  t_prev: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid and (sub-)density of the score at information ``t`` on paths not yet stopped."""
    upper = b * math.sqrt(t) if np.isfinite(b) else 8.0 * math.sqrt(t)
    new = np.linspace(-8.0 * math.sqrt(t), upper, _GRID)
    if grid is None:
        return new, stats.norm.pdf(new, scale=math.sqrt(t))
    sd = math.sqrt(t - t_prev)
    kernel = stats.norm.pdf((new[:, None] - grid[None, :]) / sd) / sd
    return new, np.trapezoid(kernel * dens[None, :], grid, axis=1)


def t_thresholds(looks: tuple[int, ...] | list[int], level: float, kind: str = "pocock",
                 paths: int = 400_000, seed: int = 20260401) -> np.ndarray:
    """Critical values of the one-sample t statistic at each look (``n_k`` observations) such that,
    under the null, the chance of crossing first at look k is ``spent(t_k) - spent(t_{k-1})``.

    Converting the z boundaries of :func:`boundaries` through nominal p-values (Jennison &
    Turnbull's significance-level approach) overshoots the level by about 6% at 4 degrees of
    freedom (measured: one-sided 0.0265 for 0.025), so litmus computes the t thresholds directly
    from ``paths`` seeded null paths (the t statistic's null law does not depend on the mean or
    the scale): exact up to Monte Carlo error, and the same on every machine.
    """
    looks = [int(n) for n in looks]
    if len(looks) == 0 or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:])):
        raise DesignError(f"looks must increase from at least 2 seeds, got {looks}")
    return np.array(_t_thresholds(tuple(looks), float(level), kind, int(paths), int(seed)))


@lru_cache(maxsize=256)
def _t_thresholds(looks: tuple[int, ...], level: float, kind: str, paths: int, seed: int) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    inc = np.diff(np.concatenate([[0.0], spent(np.asarray(looks, float) / looks[-1], level, kind)]))
    s = np.zeros(paths)
    q = np.zeros(paths)
    alive = np.ones(paths, bool)
    out, prev = [], 0
    for n, share in zip(looks, inc):
        for lo in range(prev, n, 8):  # draw in blocks of <= 8 seeds: bounded memory
            x = rng.standard_normal((paths, min(8, n - lo)))
            s += x.sum(1)
            q += np.square(x).sum(1)
        prev = n
        mean = s / n
        t = mean / np.sqrt(np.maximum(q - n * mean**2, 1e-300) / (n - 1) / n)
        k = int(round(share * paths))
        live = np.sort(t[alive])[::-1]
        # exactly k live paths lie above c; a spend below one path in ``paths`` is not resolved: spend nothing
        c = np.inf if k == 0 else (float(live[k]) if k < len(live) else -np.inf)
        out.append(c)
        alive &= ~(t > c)
    return tuple(out)


def min_start(alpha: float, family: int, test: str = "t") -> int:
    """Smallest ``start`` at which the first look's test could reject at all.

    For the paired t-test any n >= 2 can (its statistic is unbounded); for an exact sign-flip
    test the smallest one-sided p on n pairs is 1 / 2^n, which must fall below the level the
    first look may spend under the largest possible ``max`` (bounded above by the overall
    one-sided level ``alpha / (2 family)``).
    """
    if test == "t":
        return 2
    level = alpha / (2 * max(family, 1))
    return max(2, math.ceil(math.log2(1.0 / level)))


def check_sequential_design(start: object, step: object, max_: object, until: object, alpha: float = 0.05,
                 family: int = 1, test: str = "t", path: str = "final.seeds", spending: str = "pocock") -> Design:
    """Validate a spec's ``final.seeds: {start, step, max, until}``; errors name the field and the fix."""
    for name, value in (("start", start), ("step", step), ("max", max_)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DesignError(f"{path}.{name}: expected an integer, got {value!r}")
    if until != "decided":
        raise DesignError(f"{path}.until: the only rule is 'decided', got {until!r}")
    if step < 1:
        raise DesignError(f"{path}.step: must be >= 1 (got {step}); the smallest workable value is 1")
    smallest = min_start(alpha, family, test)
    if start < smallest:
        raise DesignError(f"{path}.start: with {family} comparisons at alpha {alpha} no test on {start} seeds "
                          f"could ever reject; the smallest workable start is {smallest}")
    if max_ < start:
        raise DesignError(f"{path}.max: must be >= start ({start}), got {max_}; the smallest workable value is {start}")
    if spending not in SPENDING:
        raise DesignError(f"{path}.spending: one of {', '.join(SPENDING)}, got {spending!r}")
    return Design(start, step, max_, alpha, family, spending)


_CODES = (State.BETTER, State.WORSE, State.EQUIVALENT, State.CONTINUE, State.CAPPED)


def _statistics(d: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Paired t statistic of differences ``d`` (..., n) and the smaller of TOST's two statistics."""
    n = d.shape[-1]
    mean = d.mean(-1)
    sd = d.std(-1, ddof=1)
    se = np.where(sd > 0, sd, 1e-12 * np.maximum(1.0, np.abs(mean))) / math.sqrt(n)
    return mean / se, np.minimum((mean + margin) / se, (margin - mean) / se)


def thresholds(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """t thresholds per look for superiority (each side at alpha / 2F) and equivalence (each of
    TOST's one-sided tests at alpha / F)."""
    sup = t_thresholds(design.looks, design.alpha / (2 * design.family), design.spending)
    eqv = t_thresholds(design.looks, design.alpha / design.family, design.spending)
    return sup, eqv


def _codes(d: np.ndarray, look: int, design: Design, margin: float) -> np.ndarray:
    """Index into ``_CODES`` for each comparison in ``d`` (..., n) at ``look``; equivalence is
    checked first (a significant but negligible difference is equivalent)."""
    sup, eqv = (x[look] for x in thresholds(design))
    last = look == len(design.looks) - 1
    t, t_eq = _statistics(d, margin)
    return np.select([t_eq > eqv, t > sup, -t > sup], [2, 0, 1], 4 if last else 3)


def decide(diffs: np.ndarray, look: int, design: Design, margin: float) -> tuple[State, str]:
    """State of one comparison at look ``look`` (0-based) from its paired per-seed differences
    (variant minus baseline, Delta-m points; ``len(diffs) == design.looks[look]``), and the
    boundary it crossed (the statistic against the look's threshold), if any."""
    d = np.asarray(diffs, float)
    if len(d) != design.looks[look]:
        raise DesignError(f"look {look} plans {design.looks[look]} seeds, got {len(d)}")
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return (State.CAPPED if look == len(design.looks) - 1 else State.CONTINUE), ""
    state = _CODES[int(_codes(d, look, design, margin))]
    t, t_eq = (float(x) for x in _statistics(d, margin))
    sup, eqv = (float(x[look]) for x in thresholds(design))
    crossed = {State.BETTER: f"t {t:.3g} > {sup:.3g}",
               State.WORSE: f"t {t:.3g} < -{sup:.3g}",
               State.EQUIVALENT: f"TOST t {t_eq:.3g} > {eqv:.3g}"}.get(state, "")
    return state, crossed


def simulate(design: Design, effects: np.ndarray, sd: float, margin: float, n_studies: int,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run the design on ``n_studies`` simulated studies of ``len(effects)`` comparisons with normal
    per-seed differences (mean ``effects``, sd ``sd``): states (studies x comparisons, as ``State``
    values) and the seeds each comparison used."""
    rng = np.random.default_rng(seed)
    effects = np.asarray(effects, float)
    d = rng.normal(effects[None, :, None], sd, size=(n_studies, len(effects), design.max))
    code = np.full(d.shape[:2], 3)
    used = np.zeros(d.shape[:2], int)
    for k, n in enumerate(design.looks):
        open_ = code == 3
        if not open_.any():
            break
        c = _codes(d[..., :n], k, design, margin)
        code = np.where(open_, c, code)
        used = np.where(open_, n, used)
    states = np.array([s.value for s in _CODES], dtype=object)[code]
    return states, used


def fixed_seeds_for_power(effect: float, sd: float, alpha: float, power: float) -> int:
    """Seeds a fixed paired design needs to detect ``effect`` (one-sided level ``alpha``) with ``power``
    (one-sample t power, statsmodels)."""
    from statsmodels.stats.power import TTestPower

    d = abs(effect) / sd
    ns = np.arange(2, 2001)
    pw = TTestPower().power(effect_size=d, nobs=ns, alpha=alpha, alternative="larger")
    pw = np.where(np.isnan(pw), 1.0, pw)
    hit = pw >= power
    return int(ns[np.argmax(hit)]) if hit.any() else 10**9


# --- the decisions table of a sequential study (<store>/decisions/<study>.parquet) --------------
def decisions_path(root: str | Path, study: str) -> Path:
    return Path(root) / DECISIONS_DIR / f"{study}.parquet"


def load_decisions(root: str | Path, study: str) -> pd.DataFrame:
    """The decisions recorded round by round by the study driver (empty frame if none)."""
    path = decisions_path(root, study)
    if not path.exists():
        return DECISION_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path, schema=DECISION_SCHEMA).to_pandas()


def latest_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """Each comparison's last recorded row (its state after the latest round it took part in)."""
    return decisions.sort_values("round").groupby(["dataset", "arch", "variant", "against"], sort=False).tail(1)


def verdict_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per comparison, its last recorded state: verdict, seeds used, round of decision, boundary crossed."""
    if decisions.empty:
        return decisions
    latest = latest_decisions(decisions)
    out = latest.assign(verdict=latest["state"].map(
        lambda s: {State.CAPPED.value: "inconclusive (capped)", State.CONTINUE.value: "open (next round)"}.get(s, s)))
    return out[["dataset", "arch", "variant", "against", "verdict", "diff_delta_m", "seeds", "round", "boundary",
                "n_failed"]].reset_index(drop=True)


def seeds_saved(decisions: pd.DataFrame, effect: float = 1.0, n_studies: int = 400) -> dict[str, float]:
    """Seeds spent per cell against a fixed design with the same power at ``effect`` (sd units of the
    per-seed differences): the sequential design's power by simulation, the fixed design's seeds by a
    one-sample t power calculation at the same one-sided level."""
    first = decisions.iloc[0]
    des = Design(int(first["start"]), int(first["step"]), int(first["max"]), float(first["alpha"]),
                 int(first["family"]), str(first["spending"]))
    states, _ = simulate(des, np.full(25, effect), 1.0, float(first["margin"]), n_studies, seed=1)
    power = float(np.mean(states == State.BETTER.value))
    n_fixed = fixed_seeds_for_power(effect, 1.0, des.alpha / (2 * des.family), power)
    cells: dict[tuple[str, str, str], int] = {}
    for r in verdict_table(decisions).itertuples():
        for v in (r.variant, r.against):
            cells[(r.dataset, r.arch, v)] = max(cells.get((r.dataset, r.arch, v), 0), int(r.seeds))
    spent_ = float(sum(cells.values()))
    return {"cells": len(cells), "spent": spent_, "power": power, "n_fixed": n_fixed,
            "fixed": float(n_fixed * len(cells)), "saved": 1.0 - spent_ / (n_fixed * len(cells)),
            "max": float(des.max * len(cells)), "saved_vs_max": 1.0 - spent_ / (des.max * len(cells))}


def render(decisions: pd.DataFrame) -> str:
    """Markdown: the sequential verdict table and the seeds it spent against the fixed design."""
    if decisions.empty:
        return ""
    v = verdict_table(decisions)
    lines = ["| dataset | arch | variant | against | verdict | Δm diff | seeds | round | boundary crossed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in v.itertuples():
        failed = f" ({r.n_failed} failed/diverged)" if r.n_failed else ""
        lines.append(f"| {r.dataset} | {r.arch} | {r.variant} | {r.against} | {r.verdict}{failed} | "
                     f"{r.diff_delta_m:+.2f} | {r.seeds} | {r.round} | {r.boundary or '-'} |")
    s = seeds_saved(decisions)
    lines.append("")
    lines.append(f"Seeds spent: {s['spent']:.0f} trials over {s['cells']} cells, against {s['max']:.0f} for `max` seeds "
                 f"in every cell ({s['saved_vs_max']:.0%} saved) and {s['fixed']:.0f} for a fixed design with the same "
                 f"power ({s['power']:.2f} at a 1-sd effect: {s['n_fixed']} seeds per cell; {s['saved']:.0%} saved).")
    return "\n".join(lines)
