"""Optional Bayesian verdict: the Bayesian correlated t-test with the equivalence margin as region of
practical equivalence (Benavoli, Corani, Demsar & Zaffalon, "Time for a change: a tutorial for comparing
multiple classifiers through Bayesian analysis", JMLR 2017; Corani & Benavoli 2015).

For n paired per-seed Delta-m differences with mean m and sd s, under the
non-informative prior the posterior of the mean difference is Student t with
n - 1 degrees of freedom, location m and scale s * sqrt(1/n + rho / (1 - rho)).
Independent seeds (fresh initialisation, data order and random weights per
seed, no shared test folds) have rho = 0. With tuning replicates the units are
the replicate means (df = K - 1); unpaired designs use Welch's scale and df.
Each row gets P(better) = P(diff > margin), P(equivalent) = P(|diff| <= margin),
P(worse) = P(diff < -margin): no p-value, no correction; read them as
posterior probabilities under that model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def posterior(mean: np.ndarray, se: np.ndarray, df: np.ndarray, margin: float, rho: float = 0.0,
              n: np.ndarray | None = None) -> pd.DataFrame:
    """P(better), P(equivalent), P(worse) of the posterior t(df, mean, scale) with ROPE [-margin, margin].
    ``rho`` > 0 (correlated units, e.g. cross-validation folds) inflates the scale by
    sqrt(1 + n rho / (1 - rho)); ``n`` is then the number of units."""
    mean, se, df = (np.asarray(a, float) for a in (mean, se, df))
    scale = se
    if rho:
        scale = se * np.sqrt(1 + np.asarray(n, float) * rho / (1 - rho))
    with np.errstate(all="ignore"):
        hi = stats.t.sf(margin, df, loc=mean, scale=scale)
        lo = stats.t.cdf(-margin, df, loc=mean, scale=scale)
    ok = np.isfinite(scale) & (scale > 0) & np.isfinite(df)
    better = np.where(ok, hi, np.nan)
    worse = np.where(ok, lo, np.nan)
    return pd.DataFrame({"bayes_p_better": better, "bayes_p_equivalent": 1 - better - worse, "bayes_p_worse": worse})


def correlated_t(rows: pd.DataFrame, margin: float, rho: float = 0.0) -> pd.DataFrame:
    """The posterior probabilities for verdict rows carrying ``diff``, ``se``, ``df`` (and ``n_method``)."""
    return posterior(rows["diff"].to_numpy(float), rows["se"].to_numpy(float), rows["df"].to_numpy(float),
                     margin, rho, rows["n_method"].to_numpy(float))
