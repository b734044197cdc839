"""Simulations behind the statistical claims of docs/statistics.md (used by tests and bench/inference_sims.py).

Each simulated study is one *dataset* of a selected-values frame, so one call
of the real :func:`analysis.delta_m` / :func:`analysis.verdicts` analyses
hundreds of independent studies at once (with ``correction="none"`` each
dataset's verdict is its own). Per trial and metric k, the value is

    base_k * (1 + s_k * (effect_variant + seed_v + noise) / 100)

with s_k = +1 when higher is better, a per-seed difficulty shared by all
variants (what pairing removes), and independent noise; with the baseline's
effect 0 the true Delta-m of a variant is exactly its ``effect``. Noise can be
normal, heavy-tailed (t with 3 df, scaled to the same sd) or skewed (centred
log-normal).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# (task, metric, higher_is_better, base): two tasks, three metrics
METRICS = [("seg", "miou", True, 0.5), ("seg", "acc", True, 0.75), ("depth", "err", False, 0.4)]


def noise(rng: np.random.Generator, size, sd: float, kind: str = "normal") -> np.ndarray:
    """Zero-mean noise of standard deviation ``sd``: ``normal``, ``t3`` (heavy tails) or ``lognormal`` (skewed)."""
    if kind == "normal":
        return rng.normal(0.0, sd, size)
    if kind == "t3":
        return rng.standard_t(3, size) * sd / np.sqrt(3.0)
    if kind == "lognormal":
        s = 0.8
        x = rng.lognormal(0.0, s, size)
        return (x - np.exp(s ** 2 / 2)) / np.sqrt((np.exp(s ** 2) - 1) * np.exp(s ** 2)) * sd
    raise ValueError(f"unknown noise {kind!r}")


def selected_frame(n_studies: int, seeds: int, effects: dict[str, float], sd: float = 1.0,
                   seed_sd: float = 1.0, kind: str = "normal", rng_seed: int = 0,
                   baseline_seeds: int | None = None, replicates: int = 1, tuning_sd: float = 0.0,
                   baseline: str = "ew") -> pd.DataFrame:
    """A selected-values frame of ``n_studies`` independent simulated studies (datasets ``s0``, ``s1``...).

    ``effects``: variant -> true Delta-m (points). ``sd``: per-trial noise (Delta-m points),
    ``seed_sd``: the per-seed difficulty shared by all variants. ``baseline_seeds`` gives the baseline
    other seeds (unpaired design). ``replicates`` > 1 adds tuning replicates: each replicate's winner
    runs on every seed with a replicate offset of sd ``tuning_sd`` (variants other than the baseline).
    The trial ids encode the replicate as ``...-r<k>``; :func:`trials_for` builds the matching trials table.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    k = len(METRICS)
    hib = np.array([m[2] for m in METRICS])
    base = np.array([m[3] for m in METRICS])
    sign = np.where(hib, 1.0, -1.0)
    for s in range(n_studies):
        difficulty = rng.normal(0.0, seed_sd, (max(seeds, baseline_seeds or 0) + seeds, 1))
        for variant, eff in effects.items():
            is_base = variant == baseline
            n_seed = baseline_seeds if (is_base and baseline_seeds) else seeds
            offset = seeds if (is_base and baseline_seeds) else 0
            n_rep = 1 if is_base else replicates
            rep_off = rng.normal(0.0, tuning_sd, n_rep) if n_rep > 1 else np.zeros(1)
            for r in range(n_rep):
                e = eff + rep_off[r] + difficulty[offset:offset + n_seed] + noise(rng, (n_seed, 1), sd, kind)
                vals = base * (1 + sign * e / 100)
                for i in range(n_seed):
                    tid = f"s{s}-{variant}-{offset + i}" + (f"-r{r}" if n_rep > 1 else "")
                    for j, (task, metric, h, _) in enumerate(METRICS):
                        rows.append((tid, f"s{s}", variant, offset + i, task, metric, h, vals[i, j]))
    f = pd.DataFrame(rows, columns=["trial_id", "dataset", "variant", "seed", "task", "metric",
                                    "higher_is_better", "value"])
    f["method"] = f["variant"].str.partition(":")[0]
    f["distribution"] = f["variant"].str.partition(":")[2].replace("", None)
    f["arch"] = "hps"
    f["study"] = "sim"
    f["stage"] = "final"
    f["epoch"] = 1
    return f


def trials_for(frame: pd.DataFrame, status: dict[str, str] | None = None) -> pd.DataFrame:
    """The trials table of a simulated frame: status (default completed) and replicate from the id."""
    t = frame.drop_duplicates("trial_id")[["trial_id", "study", "stage", "dataset", "arch", "method",
                                          "distribution", "seed", "variant"]].copy()
    t["status"] = [(status or {}).get(i, "completed") for i in t["trial_id"]]
    t["replicate"] = [int(m.group(1)) if (m := re.search(r"-r(\d+)$", i)) else None for i in t["trial_id"]]
    return t.reset_index(drop=True)


def diverge(frame: pd.DataFrame, variant: str, seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Mark ``variant``'s trial on ``seed`` as diverged in every study: its values are removed (as the
    selection drops unusable trials) and the returned status map says ``diverged``."""
    hit = (frame["variant"] == variant) & (frame["seed"] == seed)
    ids = frame.loc[hit, "trial_id"].unique()
    return frame[~hit].reset_index(drop=True), {i: "diverged" for i in ids}


def interval_coverage(seeds: int, n_studies: int = 400, effect: float = 1.0, paired: bool = True,
                      kind: str = "normal", rng_seed: int = 0) -> float:
    """Share of simulated studies whose :func:`analysis.delta_m` 95% interval covers the true Delta-m."""
    from .delta_m import delta_m
    f = selected_frame(n_studies, seeds, {"ew": 0.0, "m": effect}, kind=kind, rng_seed=rng_seed,
                       baseline_seeds=None if paired else seeds + 1)
    d = delta_m(f, baseline="ew")
    d = d[d["variant"] == "m"]
    return float(((d["ci_low"] <= effect) & (d["ci_high"] >= effect)).mean())


def directional_rates(seeds: int, effect_sd: float, reps: int = 4000, alpha: float = 0.05, family: int = 1,
                      kind: str = "normal", rng_seed: int = 0, margin_sd: float | None = None) -> dict[str, float]:
    """Rates of the default verdict test on paired per-seed differences of mean ``effect_sd`` (in units of
    their sd): P(better), P(worse), P(equivalent) (TOST with ``margin_sd``), and the coverage of the
    ``1 - 2 alpha / family`` interval at the Bonferroni level alpha / family (Holm's first step).
    Each side of a pair gets its own noise of ``kind`` (the difference has sd 1)."""
    from .inference import interval, one_sided, t_summary
    rng = np.random.default_rng(rng_seed)
    d = effect_sd + (noise(rng, (reps, seeds), 1.0, kind) - noise(rng, (reps, seeds), 1.0, kind)) / np.sqrt(2)
    mean, se, df = t_summary(d, np.zeros_like(d), True)
    p = one_sided(mean, se, df, margin_sd if margin_sd else 1.0)
    level = alpha / family
    lo, hi = interval(mean, se, df, 1 - 2 * level)
    out = {"better": float((p["p_better"] < level).mean()), "worse": float((p["p_worse"] < level).mean()),
           "coverage": float(((lo <= effect_sd) & (hi >= effect_sd)).mean())}
    if margin_sd:
        out["equivalent"] = float((p["p_tost"] < level).mean())
    return out


def verdict_rates(seeds: int, effect: float, n_studies: int = 300, diverged_seed: int | None = None,
                  diverged_variant: str = "m", test: str = "t", rng_seed: int = 0, sd: float = 1.0,
                  margin: float = 0.5) -> dict[str, float]:
    """Verdict shares of the real :func:`analysis.verdicts` of ``m`` against ``rlw`` (both measured against
    ``ew``) over independent simulated studies, each its own family; optionally one seed of
    ``diverged_variant`` diverges in every study (scored by the design rule)."""
    from .verdict import verdicts
    f = selected_frame(n_studies, seeds, {"ew": 0.0, "rlw": 0.0, "m": effect}, sd=sd, rng_seed=rng_seed)
    status: dict[str, str] = {}
    full = f
    if diverged_seed is not None:
        f, status = diverge(f, diverged_variant, diverged_seed)
    v = verdicts(f, against="rlw", reference="ew", margin=margin, correction="none", test=test,
                 trials=trials_for(full, status))
    v = v[v["variant"] == "m"]
    return {k: float((v["verdict"] == k).mean()) for k in ("better", "worse", "equivalent", "inconclusive")}


def tuning_coverage(replicates: int, seeds: int, tuning_sd: float, reps: int = 1000, confidence: float = 0.9,
                    rng_seed: int = 0) -> dict[str, float]:
    """Coverage of three intervals for the mean paired difference when K tuning replicates each run on S
    seeds: differences d_ks = mu + a_k + e_ks with a_k ~ N(0, tuning_sd) (the two methods' tuning luck),
    e ~ N(0, 1). Intervals: the t interval ignoring replicates (all K*S units as independent), the t
    interval on the K replicate means (the verdict's test), the hierarchical bootstrap. Also the mean
    estimated tuning share against the true one."""
    from .inference import clustered_summary, interval, t_summary
    from .tuning import hierarchical_bootstrap, variance_components
    rng = np.random.default_rng(rng_seed)
    cluster = np.repeat(np.arange(replicates), seeds)
    hit = {"naive t": 0, "replicate-mean t": 0, "hierarchical bootstrap": 0}
    shares = []
    for _ in range(reps):
        d = (rng.normal(0, tuning_sd, replicates)[cluster] + rng.normal(0, 1, replicates * seeds))
        m, se, df = t_summary(d[None], np.zeros((1, len(d))), True)
        lo, hi = interval(m, se, df, confidence)
        hit["naive t"] += lo[0] <= 0 <= hi[0]
        m, se, df = clustered_summary(d, cluster)
        lo, hi = interval(np.array([m]), np.array([se]), np.array([df]), confidence)
        hit["replicate-mean t"] += lo[0] <= 0 <= hi[0]
        lo, hi = hierarchical_bootstrap(d, cluster, confidence, 500, rng)
        hit["hierarchical bootstrap"] += lo <= 0 <= hi
        shares.append(variance_components(d, cluster)[2])
    out = {k: v / reps for k, v in hit.items()}
    out["estimated share"] = float(np.nanmean(shares))
    out["true share"] = tuning_sd ** 2 / (tuning_sd ** 2 + 1)
    return out
