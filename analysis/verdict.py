"""The litmus verdict: is a method better than, worse than, or equivalent to a baseline (RLW, EW)?

Per dataset x arch x variant, on the difference of Delta-m (percent points, both
measured against a fixed ``reference``), with units fixed by the design
(:mod:`analysis.units`: failed and diverged trials scored worst, pairing by the
design's shared seeds):

* ``better``: the one-sided superiority test (H0: difference <= 0) rejects
  after correction over the family (all variants and datasets compared with
  that baseline) -- "beats RLW" is a directional claim;
* ``worse``: the mirror one-sided test (H0: difference >= 0) rejects, same
  correction;
* ``equivalent``: two one-sided tests (TOST, Schuirmann 1987) place the
  difference within ``[-margin, +margin]`` (corrected the same way); a
  significant difference that is also shown to be smaller than the margin is
  ``equivalent`` (real but negligible);
* ``inconclusive``: neither; the reason says why.

The default test is the t-test on per-seed Delta-m (paired on the design's
shared seeds, Welch otherwise; on tuning-replicate means when the study has
tuning replicates); ``test="perm"`` uses the exact sign-flip / permutation
test instead. The interval printed with a verdict is the two-sided
``1 - 2 a`` t interval at the local level ``a`` of the deciding test (Holm's
step-down level for that row, :func:`analysis.inference.holm_levels`): with
``test="t"`` it excludes 0 exactly when the row is better or worse and lies
inside the margin exactly when it is equivalent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import inference, permutation
from .errors import AnalysisError
from .power import p_floor
from .stats import DELTA, Prepared, compare, correct
from .tuning import tuning_columns
from .units import unit_counts

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
TESTS = ("t", "perm")


def _summaries(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, se, df) of the Delta-m difference per row; vectorised per (n, m, paired) shape, and on the
    tuning-replicate means for rows with several replicates."""
    mean, se, df = (np.full(len(d), np.nan) for _ in range(3))
    pos = np.arange(len(d))
    multi = d["replicates"].to_numpy() > 1
    for (n, m, paired), idx in d[~multi].groupby(["n_method", "n_baseline", "paired"]).groups.items():
        if n == 0 or m == 0:
            continue
        rows = pos[d.index.get_indexer(idx)]
        X = np.array(d.loc[idx, "x"].tolist(), float)
        Y = np.array(d.loc[idx, "y"].tolist(), float)
        mean[rows], se[rows], df[rows] = inference.t_summary(X, Y, bool(paired))
    for i in pos[multi]:
        r = d.iloc[i]
        x, y, c = np.asarray(r["x"], float), np.asarray(r["y"], float), np.asarray(r["clusters"])
        if r["paired"]:
            mean[i], se[i], df[i] = inference.clustered_summary(x - y, c)
        else:
            xm = np.array([x[c == k].mean() for k in np.unique(c)])
            m_, s_, f_ = inference.t_summary(xm[None, :], np.asarray(y, float)[None, :], False)
            mean[i], se[i], df[i] = m_[0], s_[0], f_[0]
    return mean, se, df


def _perm_one_sided(d: pd.DataFrame, n_resamples: int, seed: int,
                    max_elements: int = permutation.MAX_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pb, pw = np.full(len(d), np.nan), np.full(len(d), np.nan)
    pos = np.arange(len(d))
    for (n, m, paired), idx in d.groupby(["n_method", "n_baseline", "paired"]).groups.items():
        if n < 2 or m < 2:
            continue
        rows = pos[d.index.get_indexer(idx)]
        X = np.array(d.loc[idx, "x"].tolist(), float)
        Y = np.array(d.loc[idx, "y"].tolist(), float)
        for alt, out in (("greater", pb), ("less", pw)):
            if paired:
                out[rows] = permutation.sign_flip(X - Y, n_resamples, rng, alternative=alt,
                                                  max_elements=max_elements)
            else:
                out[rows] = permutation.two_sample(X, Y, n_resamples, rng, alternative=alt,
                                                   max_elements=max_elements)
    return pb, pw


def decide(diff: float, better: bool, worse: bool, equivalent: bool, n: int, m: int, p_dir: float,
           level: float, p_tost: float, level_eq: float, lo: float, hi: float, ci_level: float,
           floor: float, test: str, margin: float) -> tuple[str, str]:
    """(verdict, reason) from the decisions of the directional tests and of TOST at their local levels."""
    if n < 2 or m < 2:
        return "inconclusive", f"needs at least 2 seeds per side (has {n} vs {m})"
    interval = f"{ci_level:.1%} interval [{lo:+.3g}, {hi:+.3g}]"
    if (better or worse) and not equivalent:
        side = "above" if better else "below"
        return ("better" if better else "worse"), (f"one-sided p = {p_dir:.3g} < {level:.3g} (corrected level); "
                                                    f"{interval} {side} 0")
    if equivalent:
        extra = " (the difference is significant but smaller than the margin)" if (better or worse) else ""
        return "equivalent", f"TOST p = {p_tost:.3g} < {level_eq:.3g}: within ±{margin:g}{extra}"
    if test == "perm" and floor >= level:
        return "inconclusive", (f"the exact test cannot go below p = {floor:.3g} on {n} vs {m} seeds, not below "
                                f"the corrected level {level:.3g}")
    if not np.isfinite(p_dir):
        return "inconclusive", "no test possible (identical or constant values)"
    return "inconclusive", f"{interval} contains 0 and is not within ±{margin:g}"


def verdicts(frame: pd.DataFrame, against: str = "rlw", reference: str = "ew", margin: float = 0.5,
             alpha: float = 0.05, correction: str = "holm", test: str = "t", per: str = "task",
             n_resamples: int = 9999, seed: int = 0, skip_missing: bool = False,
             trials: pd.DataFrame | None = None, bayes: bool = False,
             prepared: Prepared | None = None, max_elements: int = permutation.MAX_ELEMENTS) -> pd.DataFrame:
    """One row per dataset x arch x variant: the verdict against ``against`` with the numbers behind it.

    ``margin`` is the equivalence margin in Delta-m points (declare it; 0.5 by
    default). ``test``: ``"t"`` (default; paired / Welch t on per-seed Delta-m)
    or ``"perm"`` (exact sign-flip / permutation). ``trials``: the trials table
    (failed trials without metric rows, tuning replicates). ``bayes`` adds the
    Bayesian correlated-t posterior probabilities (Benavoli et al. 2017).
    Columns ``completed``, ``failed``, ``diverged`` count the method's trials;
    ``n_imputed_*`` the units scored worst; ``ci_level`` the interval's level.
    With tuning replicates (``replicates`` > 1) the test runs on replicate means
    and ``tuning_share`` / ``hb_low, hb_high`` give the share of variance due to
    tuning and the hierarchical bootstrap interval (:mod:`analysis.tuning`).
    ``prepared``: :func:`analysis.stats.prepare` of ``frame`` against ``reference`` (shared work);
    ``max_elements`` bounds the permutation tests' chunks (:mod:`analysis.permutation`).
    """
    if test not in TESTS:
        raise AnalysisError(f"test must be one of {sorted(TESTS)}, got {test!r}")
    if margin <= 0:
        raise AnalysisError(f"the equivalence margin must be positive, got {margin}")
    cmp = compare(frame, baseline=against, reference=reference, per=per, correction=correction,
                  n_resamples=n_resamples, seed=seed, skip_missing=skip_missing, confidence=1 - 2 * alpha,
                  trials=trials, test=test, permutation_test=False, prepared=prepared)
    skipped = cmp.attrs.get("skipped", [])
    if cmp.empty:
        out = pd.DataFrame(columns=["dataset", "arch", "variant", "against", "verdict"])
        out.attrs["skipped"] = skipped
        return out
    units = cmp.attrs["units"]
    d = cmp[cmp["task"] == DELTA].copy().reset_index(drop=True)
    mean, se, df = _summaries(d)
    ps = inference.one_sided(mean, se, df, margin)
    p_better, p_worse, p_tost = ps["p_better"], ps["p_worse"], ps["p_tost"]
    if test == "perm":
        p_better, p_worse = _perm_one_sided(d, n_resamples, seed, max_elements)
    lb = inference.holm_levels(p_better, alpha, correction)
    lw = inference.holm_levels(p_worse, alpha, correction)
    le = inference.holm_levels(p_tost, alpha, correction)
    with np.errstate(invalid="ignore"):
        better, worse, equiv = p_better < lb, p_worse < lw, p_tost < le
    up = np.where(np.isfinite(mean), mean >= 0, True)
    level = np.where(equiv, le, np.where(better, lb, np.where(worse, lw, np.where(up, lb, lw))))
    level = np.where(np.isfinite(level), level, alpha)
    lo, hi = inference.interval(mean, se, df, 1 - 2 * level)
    d["diff"] = mean
    d["se"] = se
    d["df"] = df
    d["p_better"], d["p_worse"], d["p_tost"] = p_better, p_worse, p_tost
    d["p_better_adj"] = correct(pd.Series(p_better), correction).to_numpy()
    d["p_worse_adj"] = correct(pd.Series(p_worse), correction).to_numpy()
    d["p_tost_adj"] = correct(pd.Series(p_tost), correction).to_numpy()
    d["p"] = np.where(up, p_better, p_worse)
    d["p_adj"] = np.where(up, d["p_better_adj"], d["p_worse_adj"])
    d["ci_low"], d["ci_high"], d["ci_level"] = lo, hi, 1 - 2 * level
    d["min_p"] = [p_floor(test, int(n), int(m), bool(pr), "one", n_resamples)
                  for n, m, pr in zip(d["n_method"], d["n_baseline"], d["paired"])]
    decided = [decide(r.diff, bool(b), bool(w), bool(e), r.n_method, r.n_baseline, r.p, lv, r.p_tost, leq,
                      r.ci_low, r.ci_high, r.ci_level, r.min_p, test, margin)
               for r, b, w, e, lv, leq in zip(d.itertuples(), better, worse, equiv, level, np.nan_to_num(le, nan=alpha))]
    d["verdict"] = [v for v, _ in decided]
    d["reason"] = [r for _, r in decided]
    d["against"] = d["baseline"]
    d["margin"] = margin
    d["family_size"] = int(np.isfinite(p_better).sum())
    d["test"] = test
    d["sd_diff"] = [float(np.std(np.subtract(x, y), ddof=1)) if p and len(x) > 1 else np.nan
                    for x, y, p in zip(d["x"], d["y"], d["paired"])]
    d["tuning_share"], d["hb_low"], d["hb_high"] = np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    for i in np.flatnonzero(d["replicates"].to_numpy() > 1):
        r = d.iloc[i]
        cols = tuning_columns(r["x"], r["y"], r["clusters"], bool(r["paired"]), float(r["ci_level"]), rng, 1000)
        for k, val in cols.items():
            d.loc[d.index[i], k] = val
    counts = unit_counts(units)
    d = d.merge(counts[["dataset", "arch", "variant", "completed", "failed", "diverged"]],
                on=["dataset", "arch", "variant"], how="left")
    if bayes:
        from .bayes import correlated_t
        post = correlated_t(d, margin)
        for c in post.columns:
            d[c] = post[c].to_numpy()
    cols = ["dataset", "arch", "variant", "against", "verdict", "diff", "ci_low", "ci_high", "ci_level",
            "p", "p_adj", "p_better", "p_better_adj", "p_worse", "p_worse_adj", "p_tost", "p_tost_adj",
            "hedges_g", "a12", "n_method", "n_baseline", "paired", "completed", "failed", "diverged",
            "n_imputed_method", "n_imputed_baseline", "n_unmatched", "replicates", "tuning_share", "hb_low",
            "hb_high", "sd_diff", "min_p",
            "margin", "family_size", "test", "reference", "reason"]
    cols += [c for c in d.columns if c.startswith("bayes_")]
    out = d[cols].rename(columns={"diff": "diff_delta_m"}).reset_index(drop=True)
    out.attrs["skipped"] = skipped
    return out
