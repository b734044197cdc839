"""Two-sample comparisons of a method against a baseline, per task x metric and for Delta-m.

For every dataset x arch x variant x task x metric: the seed means, their
difference, Welch's t-test (paired t-test when the design pairs them) with its
confidence interval, a permutation test (sign-flip when paired; exact up to
``n_resamples`` arrangements, else Monte Carlo; batched in bounded memory,
:mod:`analysis.permutation`), Hedges' g and Vargha-Delaney A12 (both
direction-aware: > 0 / > 0.5 means the method is better), and p-values
corrected over the whole family (Holm by default, Benjamini-Hochberg optional).
Delta-m rows (task = metric = ``delta_m``) compare per-seed Delta-m against a
fixed reference (``reference``, default the baseline itself).

Units and pairing come from the design, not from which trials survived
(:mod:`analysis.units`): every seed (x tuning replicate) that ran counts; a
failed or diverged trial, or a completed one with a non-finite value, is
scored with the worst value of its comparison group (worst-rank scoring,
Lachin 1999) so that blowing up never helps a method; running or never-run
trials are left out of both sides and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from . import permutation
from .delta_m import per_seed, _as_selected
from .errors import AnalysisError
from .naming import has_baseline, resolve_baseline
from .power import min_p_independent, min_p_paired
from .units import design_units, scored_values

DELTA = "delta_m"
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh", "fdr_bh": "fdr_bh", "bonferroni": "bonferroni", "none": "none"}
P_OF_TEST = {"t": "p_t", "perm": "p_perm"}


def long_values(selected: pd.DataFrame, reference: str, per: str = "task",
                baseline_arch: str | None = None, units: pd.DataFrame | None = None,
                ps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-unit values: the selected task metrics plus one Delta-m row per trial (vs ``reference``), with
    failed / diverged / non-finite units scored worst (column ``imputed``) and a ``replicate`` column.
    ``ps``: the per-seed Delta-m of ``selected`` against ``reference`` when already computed."""
    cols = ["trial_id", "dataset", "arch", "variant", "seed", "task", "metric", "higher_is_better", "value"]
    v = selected[cols].copy()
    for c in ["dataset", "arch", "variant", "task", "metric", "trial_id"]:
        v[c] = v[c].astype(str)
    d = per_seed(selected, reference, per, baseline_arch) if ps is None else ps
    d = d.assign(task=DELTA, metric=DELTA, higher_is_better=True, value=d["delta_m"],
                 trial_id=d["trial_id"].astype(str))[cols]
    values = pd.concat([v, d], ignore_index=True)
    if units is None:
        units = design_units(selected)
    return scored_values(values, units)


@dataclass
class Prepared:
    """What every comparison of one selection against one Delta-m reference shares, computed once
    (:func:`prepare`): the design's units, the per-unit values (:func:`long_values`) and, per baseline, the
    paired arrays (:func:`pair_arrays`). The report compares the same selection against EW and RLW, for
    the per-metric tests and for the verdicts; :func:`compare` and :func:`analysis.verdicts` take it."""

    selected: pd.DataFrame
    reference: str
    per: str
    units: pd.DataFrame
    values: pd.DataFrame
    pairs: dict = field(default_factory=dict)


def prepare(selected: pd.DataFrame, reference: str, per: str = "task", trials: pd.DataFrame | None = None,
            ps: pd.DataFrame | None = None) -> Prepared:
    """Units and per-unit values of already selected rows (see :class:`Prepared`); ``ps``: their per-seed
    Delta-m against ``reference`` if already computed."""
    units = design_units(selected, trials)
    return Prepared(selected, reference, per, units, long_values(selected, reference, per, None, units, ps))


def _align(sx: list, x: list, sy: list, y: list) -> tuple[list, list, list, int]:
    """Pair method units with baseline units by (replicate, seed). When only one side has several tuning
    replicates (an untuned baseline), each of its units is matched with the other side's unit of the same
    seed. Returns aligned x, aligned y, each pair's replicate label, and the units left unmatched."""
    if sx == sy and len(set(sx)) == len(sx):  # the common case: the same units on both sides, in order
        return list(x), list(y), [u[0] for u in sx], 0
    rx, ry = {u[0] for u in sx}, {u[0] for u in sy}
    by_seed = rx != ry and (len(rx) == 1 or len(ry) == 1)
    key = (lambda u: u[1]) if by_seed else (lambda u: u)
    swap = by_seed and len(ry) > 1  # iterate over the side with replicates
    many, many_v, one, one_v = (sy, y, sx, x) if swap else (sx, x, sy, y)
    lookup = {key(u): v for u, v in zip(one, one_v)}
    a, b, labels, used = [], [], [], set()
    for u, v in zip(many, many_v):
        k = key(u)
        if k in lookup:
            a.append(v)
            b.append(lookup[k])
            labels.append(u[0])
            used.add(k)
    dropped = (len(many) - len(a)) + (len(one) - len(used))
    return (b, a, labels, dropped) if swap else (a, b, labels, dropped)


def pair_arrays(values: pd.DataFrame, baseline: str, baseline_arch: str | None = None,
                datasets_without: list[str] | None = None) -> pd.DataFrame:
    """One row per comparison with arrays ``x`` (method units) and ``y`` (baseline units).

    When both sides ran at least 2 common units (seed, or tuning replicate x seed) the comparison is
    ``paired`` on them, aligned, and units on one side only are left out (``n_unmatched``); otherwise
    it is unpaired on all units. ``clusters`` holds each aligned pair's tuning replicate.
    """
    v = values.sort_values(["replicate", "seed"])
    keys = ["dataset", "arch", "variant", "task", "metric", "higher_is_better"]
    v = v.assign(_unit=list(zip(v["replicate"].to_numpy(), v["seed"].to_numpy())))
    g = v.groupby(keys, observed=True, sort=True).agg(
        x=("value", list), sx=("_unit", list), n_imputed=("imputed", "sum")).reset_index()
    bmap = {}
    for dataset, gd in g.groupby("dataset"):
        variants = gd["variant"].unique() if baseline_arch is None else gd.loc[gd["arch"] == baseline_arch, "variant"].unique()
        if has_baseline(baseline, variants):
            bmap[dataset] = resolve_baseline(baseline, variants)
        elif datasets_without is not None:
            datasets_without.append(dataset)
        else:
            raise AnalysisError(f"baseline {baseline!r} is absent from dataset {dataset!r}")
    g = g[g["dataset"].isin(list(bmap))].copy()
    g["baseline"] = g["dataset"].map(bmap)
    g["_barch"] = baseline_arch if baseline_arch is not None else g["arch"]
    b = g[["dataset", "arch", "variant", "task", "metric", "x", "sx", "n_imputed"]].rename(
        columns={"arch": "_barch", "variant": "baseline", "x": "y", "sx": "sy", "n_imputed": "n_imputed_baseline"})
    out = g.merge(b, on=["dataset", "_barch", "baseline", "task", "metric"], how="inner")
    out = out[~((out["variant"] == out["baseline"]) & (out["arch"] == out["_barch"]))].copy()
    xs, ys, cl, paired, unmatched = [], [], [], [], []
    for sx, x, sy, y in zip(out["sx"], out["x"], out["sy"], out["y"]):
        ax, ay, labels, dropped = _align(sx, x, sy, y)
        if len(ax) >= 2:
            xs.append(ax), ys.append(ay), cl.append(labels), paired.append(True), unmatched.append(dropped)
        else:
            xs.append(list(x)), ys.append(list(y)), paired.append(False), unmatched.append(0)
            cl.append([u[0] for u in sx])
    out["x"], out["y"], out["clusters"], out["paired"], out["n_unmatched"] = xs, ys, cl, paired, unmatched
    out["n_method"] = out["x"].map(len)
    out["n_baseline"] = out["y"].map(len)
    out["replicates"] = out["clusters"].map(lambda c: len(set(c)))
    out = out.rename(columns={"n_imputed": "n_imputed_method"})
    return out.drop(columns=["_barch"]).reset_index(drop=True)


def _tests_block(X: np.ndarray, Y: np.ndarray, sign: np.ndarray, paired: bool, confidence: float,
                 n_resamples: int, rng: np.random.Generator, permutation_test: bool = True,
                 max_elements: int = permutation.MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """Vectorised two-sided tests for G comparisons of equal shape: X [G, n], Y [G, m]."""
    n, m = X.shape[1], Y.shape[1]
    out: dict[str, np.ndarray] = {}
    G = X.shape[0]
    nan = np.full(G, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Degenerate samples (zero variance) give NaN p-values: reported as NaN, not as an error.
        warnings.simplefilter("ignore", RuntimeWarning)
        if n >= 2 and m >= 2:
            t = stats.ttest_rel(X, Y, axis=1) if paired else stats.ttest_ind(X, Y, axis=1, equal_var=False)
            ci = t.confidence_interval(confidence)
            out.update(p_t=np.asarray(t.pvalue, float), ci_low=np.asarray(ci.low, float),
                       ci_high=np.asarray(ci.high, float))
            if not permutation_test:
                out["p_perm"] = nan
            elif paired:
                out["p_perm"] = permutation.sign_flip(X - Y, n_resamples, rng, max_elements=max_elements)
            else:
                out["p_perm"] = permutation.two_sample(X, Y, n_resamples, rng, max_elements=max_elements)
            sp = np.sqrt(((n - 1) * X.var(axis=1, ddof=1) + (m - 1) * Y.var(axis=1, ddof=1)) / (n + m - 2))
            j = 1 - 3 / (4 * (n + m) - 9)
            out["hedges_g"] = sign * (X.mean(1) - Y.mean(1)) / sp * j
        else:
            out.update(p_t=nan, ci_low=nan, ci_high=nan, p_perm=nan, hedges_g=nan)
    sx, sy = X * sign[:, None], Y * sign[:, None]
    a12 = np.empty(G)
    step = max(1, 2_000_000 // max(n * m, 1))
    for i in range(0, G, step):  # bounded memory: [chunk, n, m]
        a, b = sx[i:i + step], sy[i:i + step]
        a12[i:i + step] = ((a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
                           + 0.5 * (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2)))
    out["a12"] = a12
    floor = min_p_paired(n, n_resamples) if paired else min_p_independent(n, m, n_resamples)
    out["min_p"] = np.full(G, floor)
    return out


def run_tests(pairs: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 9999,
              seed: int = 0, permutation_test: bool = True, max_elements: int = permutation.MAX_ELEMENTS
              ) -> pd.DataFrame:
    """Add test columns to :func:`pair_arrays` output, one vectorised call per (n, m, paired) shape;
    the permutation tests in chunks of at most ``max_elements`` floats (:mod:`analysis.permutation`)."""
    rng = np.random.default_rng(seed)
    res = pairs.copy()
    res["mean_method"] = [float(np.mean(a)) if len(a) else np.nan for a in res["x"]]
    res["mean_baseline"] = [float(np.mean(a)) if len(a) else np.nan for a in res["y"]]
    res["diff"] = res["mean_method"] - res["mean_baseline"]
    res["rel_improvement_pct"] = np.where(res["task"] == DELTA, np.nan, np.where(
        res["higher_is_better"], 1.0, -1.0) * res["diff"] / res["mean_baseline"].abs() * 100)
    cols = ["p_t", "ci_low", "ci_high", "p_perm", "hedges_g", "a12", "min_p"]
    for c in cols:
        res[c] = np.nan
    for (n, m, paired), idx in res.groupby(["n_method", "n_baseline", "paired"]).groups.items():
        if n == 0 or m == 0:
            continue
        block = res.loc[idx]
        X = np.array(block["x"].tolist(), float)
        Y = np.array(block["y"].tolist(), float)
        sign = np.where(block["higher_is_better"].to_numpy(bool), 1.0, -1.0)
        for c, arr in _tests_block(X, Y, sign, bool(paired), confidence, n_resamples, rng,
                                   permutation_test, max_elements).items():
            res.loc[idx, c] = arr
    return res


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (equal to statsmodels ``multipletests(method="holm")``,
    checked in the tests; statsmodels' Holm branch calls ``gc.collect()``, 0.1 s per call)."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out


def correct(p: pd.Series, method: str = "holm") -> pd.Series:
    """Family-wise (Holm, Bonferroni) or false-discovery (Benjamini-Hochberg, scipy) corrected p-values;
    NaN stays NaN and is not counted in the family."""
    if method not in CORRECTIONS:
        raise AnalysisError(f"correction must be one of {sorted(CORRECTIONS)}, got {method!r}")
    out = pd.Series(np.nan, index=p.index)
    ok = p.notna()
    if ok.any():
        values = p[ok].to_numpy(float)
        kind = CORRECTIONS[method]
        if kind == "none":
            out[ok] = values
        elif kind == "holm":
            out[ok] = holm(values)
        elif kind == "fdr_bh":
            out[ok] = stats.false_discovery_control(values, method="bh")
        else:
            out[ok] = multipletests(values, method=kind)[1]
    return out


def compare(frame: pd.DataFrame, baseline: str = "rlw", reference: str | None = None, per: str = "task",
            confidence: float = 0.95, correction: str = "holm", n_resamples: int = 9999,
            baseline_arch: str | None = None, seed: int = 0, skip_missing: bool = False,
            trials: pd.DataFrame | None = None, test: str = "t", permutation_test: bool = True,
            prepared: Prepared | None = None, max_elements: int = permutation.MAX_ELEMENTS) -> pd.DataFrame:
    """Compare every variant with ``baseline`` per dataset x arch x task x metric and on Delta-m.

    ``frame``: output of :func:`analysis.select` or a raw metrics frame (then
    selected with best-val, and its ``status`` column tells failed and diverged
    trials). ``trials`` (the trials table) adds trials without metric rows and
    tuning replicates. ``reference``: the variant Delta-m is measured against
    (default: the baseline). ``p_t_adj`` and ``p_perm_adj`` are two-sided and
    corrected over the whole returned family; ``p_adj`` is the one of ``test``.
    ``permutation_test=False`` skips the permutation test (``p_perm`` NaN).
    ``skip_missing`` leaves out datasets without the baseline (listed in
    ``frame.attrs['skipped']``) instead of raising. ``prepared``: :func:`prepare` of ``frame`` (selected
    rows) with this ``reference``, ``per`` and ``trials``, shared by several calls (same result).
    ``max_elements`` caps the floats of any intermediate array of the permutation tests (the resample
    matrices are built in chunks; the p-values do not depend on it).
    """
    if test not in P_OF_TEST:
        raise AnalysisError(f"test must be one of {sorted(P_OF_TEST)}, got {test!r}")
    ref_name = reference or baseline
    if prepared is not None:
        if prepared.reference != ref_name or prepared.per != per or baseline_arch is not None \
                or prepared.selected is not frame:
            raise AnalysisError("prepared values were computed for another selection, reference or per")
        sel, units, values = prepared.selected, prepared.units, prepared.values
    else:
        raw = frame if "split" in frame.columns else None
        sel = _as_selected(frame, ref_name)
        units = design_units(raw if raw is not None else sel, trials)
        values = None
    datasets_without: list[str] | None = [] if skip_missing else None
    skipped: list[str] = []
    keep = None
    if skip_missing:
        keep = [d for d, g in sel.groupby("dataset", observed=True)
                if has_baseline(ref_name, g["variant"].astype(str).unique())
                and has_baseline(baseline, g["variant"].astype(str).unique())]
        skipped = sorted(set(map(str, pd.unique(sel["dataset"]))) - set(map(str, keep)))
        keep = [str(k) for k in keep]
        sel = sel[sel["dataset"].isin(keep)]
        units = units[units["dataset"].isin(keep)]
        if values is not None:  # every step of long_values is per dataset: the subset's values
            values = values[values["dataset"].isin(keep)]
        if sel.empty:
            out = pd.DataFrame()
            out.attrs["skipped"] = skipped
            return out
    if keep is None or (prepared is not None
                        and set(keep) == set(map(str, pd.unique(prepared.selected["dataset"])))):
        key = (baseline, None)  # every dataset: the same pairs with or without skip_missing
    else:
        key = (baseline, tuple(keep))
    if prepared is not None and key in prepared.pairs:
        pairs = prepared.pairs[key]
    else:
        if values is None:
            values = long_values(sel, ref_name, per, baseline_arch, units)
        pairs = pair_arrays(values, baseline, baseline_arch, datasets_without)
        if prepared is not None:
            prepared.pairs[key] = pairs
    res = run_tests(pairs, confidence, n_resamples, seed, permutation_test or test == "perm", max_elements)
    res["p_t_adj"] = correct(res["p_t"], correction)
    res["p_perm_adj"] = correct(res["p_perm"], correction)
    res["p_adj"] = res[P_OF_TEST[test] + "_adj"]
    res["family_size"] = int(res[P_OF_TEST[test]].notna().sum())
    res["reference"] = ref_name
    res["test"] = test
    res = res.drop(columns=["sx", "sy"])
    res.attrs["units"] = units
    if skip_missing:
        res.attrs["skipped"] = skipped
    return res
