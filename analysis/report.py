"""The whole analysis of a store: tables, tests, verdicts, ranks, power, figures -> ``index.md``.

``analyse`` computes everything from a metrics frame into an :class:`Analysis`;
``write_report`` writes ``index.md``, CSV, LaTeX and figures; ``summary_table``
is the short Markdown the study runner prints at the end of a run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots, ranks, robust, sequential
from .budget import budget_curves, order_changes, tuning_scores
from .convergence import convergence, convergence_warning
from .counts import cell_counts, cells_without_verdict, planned_cells
from .delta_m import delta_m, per_seed
from .errors import AnalysisError, NothingCompleted
from .naming import families, has_baseline, resolve_baseline
from .power import power_warnings, seeds_needed
from .select import select, store_selection, store_studies, validation_scores
from .stats import compare, prepare
from .store import load, load_trials, names, plain_strings
from .tables import LEGEND, architecture_table, combination_table, render_paper_table, table_data
from .verdict import verdicts

STAGE_PREFERENCE = ("final", "single", "tune")
VERDICT_COLUMNS = ["dataset", "arch", "variant", "against", "verdict", "diff_delta_m", "ci_low", "ci_high", "ci_level",
                   "p", "p_adj", "p_tost_adj", "hedges_g", "n_method", "n_baseline", "paired", "completed", "failed",
                   "diverged", "n_imputed_method", "n_imputed_baseline", "replicates", "reason"]


@dataclass
class Analysis:
    """Everything computed for one study (see :func:`analyse`)."""

    baseline: str
    epoch: str | int
    selected: pd.DataFrame
    counts: pd.DataFrame
    dm: pd.DataFrame
    per_seed: pd.DataFrame
    tests: pd.DataFrame
    verdicts: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    across: dict = field(default_factory=dict)
    curves: pd.DataFrame | None = None
    datasets: list[str] = field(default_factory=list)
    test: str = "t"
    convergence: pd.DataFrame | None = None
    budget: pd.DataFrame | None = None
    #: variant -> family (loss, gradient, random) from the trials table (the method registry's)
    families: dict[str, str] = field(default_factory=dict)
    #: per dataset x arch, the numbers of its paper-style table (:func:`_table_data`)
    table_cache: dict = field(default_factory=dict, repr=False)


def pick_stage(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Analyse one stage: ``final`` if present, else ``single``, else ``tune`` (tuning seeds are biased)."""
    stages = set(names(frame["stage"]))
    if len(stages) <= 1:
        if stages == {"tune"}:
            notes.append("only tuning-stage trials: their seeds took part in tuning, so results are biased upward")
        return frame
    for s in STAGE_PREFERENCE:
        if s in stages:
            notes.append(f"stages {', '.join(sorted(stages))} present: analysing stage {s!r} only")
            return frame[frame["stage"] == s]
    raise AnalysisError(f"unknown stages {sorted(stages)}")


def _choose_epoch(frame: pd.DataFrame, epoch: str | int, notes: list[str]) -> str | int:
    if epoch == "best-val" and not (frame["split"] == "val").any():
        raise AnalysisError("best-val selection needs a 'val' split and the store has none; pass --epoch last "
                            "(litmus never selects epochs on the test split)")
    return epoch


def analyse(frame: pd.DataFrame, trials: pd.DataFrame | None = None, baseline: str = "ew",
            against: tuple[str, ...] = ("rlw", "ew"), epoch: str | int = "best-val", split: str = "test",
            margin: float = 0.5, alpha: float = 0.05, correction: str = "holm", per: str = "task",
            n_resamples: int = 2000, seed: int = 0, test: str = "t", bayes: bool = False) -> Analysis:
    """Run the full analysis of one study's metrics frame (see docs/statistics.md).

    ``test``: the test behind the verdicts, ``t`` (t-test on per-seed Delta-m, default) or ``perm``
    (exact sign-flip / permutation). ``bayes`` adds Bayesian posterior probabilities to the verdicts.
    A store too large for memory goes through :func:`analyse_store` instead (same result).
    """
    notes: list[str] = []
    studies = names(frame["study"])
    if len(studies) > 1:
        raise AnalysisError(f"the data hold several studies ({', '.join(studies)}): choose one (--study)")
    frame = pick_stage(frame, notes)
    epoch = _choose_epoch(frame, epoch, notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = select(frame, split=split, epoch=epoch, baseline=baseline, per=per)
    notes += [str(w.message) for w in caught]
    curves = validation_scores(frame, baseline, per) if epoch == "best-val" else None
    index = frame[["study", "stage", "trial_id", "dataset", "arch", "variant", "seed", "status"]]
    return _analyse_selected(sel, index, trials, curves, notes, baseline, against, epoch, margin, alpha,
                             correction, per, n_resamples, seed, test, bayes)


def analyse_store(store: str | Path, study: str | None = None, dataset: str | None = None,
                  trials: pd.DataFrame | None = None, baseline: str = "ew",
                  against: tuple[str, ...] = ("rlw", "ew"), epoch: str | int = "best-val", split: str = "test",
                  margin: float = 0.5, alpha: float = 0.05, correction: str = "holm", per: str = "task",
                  n_resamples: int = 2000, seed: int = 0, test: str = "t", curves: bool = True,
                  bayes: bool = False) -> Analysis:
    """:func:`analyse` reading the store in columns (:func:`analysis.select.store_selection`): only the
    selected rows reach pandas, so memory does not grow with epochs x splits. ``curves``: also the
    validation curves (aggregated per dataset x variant x epoch)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = store_selection(store, study=study, dataset=dataset, split=split, epoch=epoch, baseline=baseline,
                            per=per, curves=curves and epoch == "best-val", trials=trials)
    notes = s.notes + [str(w.message) for w in caught]
    if trials is None:
        trials = load_trials(store, study=study, dataset=dataset)
    sel = plain_strings(s.selected)
    a = _analyse_selected(sel, s.index, trials, s.curves, notes, baseline, against,
                          s.epoch, margin, alpha, correction, per, n_resamples, seed, test, bayes)
    planned = planned_cells(store, study or (names(sel["study"])[0] if len(names(sel["study"])) == 1 else None))
    if planned is not None:  # every planned cell, with its missing trials, also one no trial reached
        if dataset is not None:
            planned = planned[planned["dataset"] == dataset]
        a.counts = cell_counts(s.index, trials, sel, planned)
    return a


def _analyse_selected(sel: pd.DataFrame, index: pd.DataFrame, trials: pd.DataFrame | None,
                      curves: pd.DataFrame | None, notes: list[str], baseline: str, against: tuple[str, ...],
                      epoch: str | int, margin: float, alpha: float, correction: str, per: str,
                      n_resamples: int, seed: int, test: str, bayes: bool = False) -> Analysis:
    """Everything after the selection: counts, Delta-m, tests, verdicts, ranks (one value per trial x metric)."""
    counts = cell_counts(index, trials, sel)
    family = families(trials)
    keep = [d for d, g in sel.groupby("dataset", observed=True) if has_baseline(baseline, g["variant"].astype(str).unique())]
    lacking = sorted(set(map(str, pd.unique(sel["dataset"]))) - set(map(str, keep)))
    if lacking:
        notes.append(f"baseline {baseline!r} absent from {', '.join(lacking)}: no Delta-m, tests or verdicts there")
    sel_b = sel[sel["dataset"].isin(keep)]
    if sel_b.empty:
        raise AnalysisError(f"baseline {baseline!r} is absent from every dataset")
    ps = per_seed(sel_b, baseline, per)
    dm = delta_m(sel_b, baseline, per=per, n_resamples=n_resamples, seed=seed, ps=ps)
    conv = convergence(sel, trials) if epoch == "best-val" else None
    if conv is not None and (warning := convergence_warning(conv)):
        notes.insert(0, warning)
    if trials is None or not len(trials):
        trials = index  # statuses of the trials that wrote metric rows (a store without trials table)
    prep = prepare(sel_b, baseline, per, trials, ps)  # units and values shared by every comparison below
    tests = compare(sel_b, baseline=baseline, reference=baseline, per=per, correction=correction,
                    n_resamples=9999, seed=seed, confidence=1 - alpha, trials=trials, test=test,
                    permutation_test=test == "perm", prepared=prep)
    vs = []
    for a in dict.fromkeys(against):
        v = verdicts(sel_b, against=a, reference=baseline, margin=margin, alpha=alpha, correction=correction,
                     per=per, seed=seed, skip_missing=True, test=test, trials=trials, bayes=bayes, prepared=prep)
        if v.attrs.get("skipped"):
            notes.append(f"no verdicts against {a!r} on {', '.join(v.attrs['skipped'])} (absent)")
        vs.append(v)
    vs = pd.concat([v for v in vs if len(v)], ignore_index=True) if any(len(v) for v in vs) else pd.DataFrame()
    if (dm["n_seeds"] <= 1).all():
        notes.append("one seed per method: no test, interval or verdict is possible; run more seeds")
    for a in dict.fromkeys(against):
        sub = vs[vs["against"].astype(str).str.startswith(a)] if len(vs) else vs
        if len(sub):
            shapes = list(zip(sub["n_method"], sub["n_baseline"], sub["paired"]))
            notes += [f"vs {a}: {w}" for w in power_warnings(shapes, alpha, int(sub["family_size"].iloc[0]), 9999,
                                                            test=test)]
    if len(vs) and (vs["replicates"] > 1).any():
        k = int(vs["replicates"].max())
        share = float(np.nanmedian(vs["tuning_share"])) if vs["tuning_share"].notna().any() else float("nan")
        notes.append(f"{k} tuning replicates per method: tuning accounts for a median {share:.0%} of the variance of "
                     "per-seed Δm differences; the verdicts test the replicate means (df = K - 1), and hb_low/hb_high "
                     "give the hierarchical bootstrap interval (replicate -> seed)")
    if len(vs) and (vs["replicates"] <= 1).all():
        notes.append("tuning variance is not accounted for: one tuning run per method, so the verdicts hold for "
                     "these tuned hyperparameters only (set tuning.replicates: K > 1 to measure it)")
    return Analysis(baseline, epoch, sel, counts, dm, ps, tests, vs, notes,
                    across_datasets(dm, ps, baseline, alpha, correction, n_resamples, seed, notes), curves,
                    sorted(map(str, keep)), test, conv, families=family)


def across_datasets(dm: pd.DataFrame, ps: pd.DataFrame, baseline: str, alpha: float, correction: str,
                    n_resamples: int, seed: int, notes: list[str]) -> dict:
    """Friedman / Iman-Davenport, average ranks, CD, pairwise Wilcoxon-Holm, IQM, P(improvement)."""
    out: dict = {}
    matrix, dropped = ranks.score_matrix(dm)
    if dropped:
        notes.append(f"left out of cross-dataset ranks (not on every dataset): {', '.join(dropped)}")
    n, k = matrix.shape
    if n >= 2 and k >= 3:
        out["friedman"] = ranks.friedman(matrix)
        out["ranks"] = ranks.average_ranks(matrix)
        out["cd"] = ranks.critical_difference(k, n, alpha)
        out["pairwise"] = ranks.pairwise_wilcoxon(matrix, correction)
        out["cliques"] = ranks.cliques(out["ranks"], out["pairwise"], alpha)
        floor = ranks.min_p_wilcoxon(n)
        family = len(out["pairwise"])
        out["cd_separable"] = plots.cd_can_separate(k, n, out["cd"], floor, family, alpha)
        if not out["cd_separable"]:
            notes.append(f"no critical-difference figure: with {k} variants on {n} datasets neither the Nemenyi "
                         f"CD ({out['cd']:.2f} > {k - 1} ranks) nor a Holm-corrected Wilcoxon test can separate any pair")
        if floor >= alpha / max(family, 1):
            notes.append(f"across {n} datasets an exact Wilcoxon p cannot go below {floor:.3g}, above "
                         f"alpha/{family} = {alpha / family:.3g} (Holm over {family} pairs): no pair can differ "
                         f"significantly ({'6' if n < 6 else 'more'} datasets needed)")
    else:
        notes.append(f"cross-dataset ranks need >= 2 datasets and >= 3 variants on all of them (have {n} x {k})")
    finite = ps[np.isfinite(ps["delta_m"])]
    if len(finite):
        runs = robust.runs_by_variant(finite)
        out["iqm"] = robust.iqm_table(finite, n_resamples=n_resamples, seed=seed, runs=runs)
        bases = [dm["baseline"].iloc[0]]
        if has_baseline("rlw", dm["variant"].unique()):
            bases.append(resolve_baseline("rlw", dm["variant"].unique()))
        out["improvement"] = {b: robust.improvement_table(finite, b, n_resamples=n_resamples, seed=seed, runs=runs)
                              for b in dict.fromkeys(bases)}
    return out


def _md(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """Small DataFrame -> Markdown (no tabulate dependency)."""
    if frame is None or len(frame) == 0:
        return "_none_\n"
    cols = list(frame.columns)
    fmt = lambda x: (format(x, floatfmt) if isinstance(x, (float, np.floating)) and np.isfinite(x)
                     else "–" if isinstance(x, (float, np.floating)) else str(x))
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _table_data(a: Analysis, dataset: str, arch: str, alpha: float) -> pd.DataFrame:
    """:func:`analysis.tables.table_data` of one dataset x arch, computed once per analysis (the report
    renders it in Markdown and in LaTeX)."""
    key = (dataset, arch, alpha, id(a.selected), id(a.dm), id(a.tests), id(a.counts))
    if key not in a.table_cache:
        a.table_cache[key] = table_data(a.selected, dataset, a.dm.loc[a.dm["dataset"] == dataset, "baseline"].iloc[0],
                                        a.dm, a.tests, a.counts, arch=arch, alpha=alpha, family=a.families)
    return a.table_cache[key]


def dataset_tables(a: Analysis, dataset: str, fmt: str = "markdown", alpha: float = 0.05) -> str:
    """All tables of one dataset in ``fmt``: Table 1 per architecture, Table 3 and 4 when they apply."""
    out = []
    archs = sorted(a.dm.loc[a.dm["dataset"] == dataset, "arch"].unique())
    if not archs:
        raise AnalysisError(f"dataset {dataset!r} has no Delta-m rows (absent, or the baseline is missing)")
    for arch in archs:
        data = _table_data(a, dataset, arch, alpha)
        if fmt == "csv":
            out.append(data.assign(dataset=dataset, arch=arch).to_csv(index=False))
            continue
        cap = f"{dataset} ({arch}): test results at the {a.epoch} epoch, against {a.baseline}"
        out.append(render_paper_table(data, data.loc[data["group"] == "baseline", "variant"].iloc[0], fmt, cap))
    if fmt != "csv":
        variants = a.dm.loc[a.dm["dataset"] == dataset, "variant"]
        if variants.str.contains(r"\+").any():
            out.append(combination_table(a.dm, dataset, fmt, a.tests, alpha, f"{dataset}: Δm of loss x gradient combinations",
                                         a.families))
        if len(archs) > 1:
            out.append(architecture_table(a.dm, dataset, fmt, a.tests, alpha, f"{dataset}: Δm by architecture", a.families))
    return "\n".join(out)


def _power_table(a: Analysis, margin: float, alpha: float, correction: str = "holm") -> pd.DataFrame:
    """Seeds per method for 80% power of the verdicts' test (one-sided, at alpha / family size) per dataset
    and baseline, from the median standard deviation of the per-seed Δm differences."""
    rows = []
    if not len(a.verdicts):
        return pd.DataFrame()
    for (dataset, against), g in a.verdicts.groupby(["dataset", "against"], sort=True):
        sd = float(np.nanmedian(g["sd_diff"])) if g["sd_diff"].notna().any() else np.nan
        fam = int(g["family_size"].iloc[0])
        rows.append({"dataset": dataset, "against": against, "median sd of per-seed Δm differences": sd,
                     "family": fam,
                     **{f"seeds for {e:g} pt": seeds_needed(e, sd, alpha, 0.8, a.test, fam, True, "one", correction)
                        for e in (margin, 1.0, 2.0)}})
    return pd.DataFrame(rows)


def render_index(a: Analysis, title: str, margin: float, alpha: float, correction: str,
                 figures: dict[str, list[str]]) -> str:
    """The Markdown text of ``index.md``."""
    p = [f"# {title}\n",
         f"Baseline **{a.baseline}**; epoch selection **{a.epoch}** (validation Δm against the baseline's last-epoch "
         f"validation means; the test split never selects); α = {alpha}, {correction} correction, "
         f"equivalence margin ±{margin} Δm points. See docs/statistics.md.\n"]
    if a.notes:
        p.append("## Notes and power warnings\n\n" + "\n".join(f"- {n}" for n in a.notes) + "\n")
    p.append("## Trials per cell\n\n" + _md(a.counts) )
    if a.convergence is not None:
        p.append("## Convergence\n\nPer cell, the trials whose best validation epoch is their last (over half: "
                 "the training budget is too short, and the comparison measures speed of training).\n\n"
                 + _md(a.convergence))
    p.append("## Verdicts\n\nbetter / worse: one-sided test of the Δm difference, corrected over the family; "
             "equivalent: TOST within the margin. The interval is at the level (ci_level) of the test that "
             "decides the row. Failed and diverged trials are scored as the worst value of their comparison "
             "(n_imputed).\n\n"
             + _md(a.verdicts[VERDICT_COLUMNS + (["tuning_share", "hb_low", "hb_high"]
                                                 if (a.verdicts["replicates"] > 1).any() else [])
                              + [c for c in a.verdicts.columns if c.startswith("bayes_")]]
                   if len(a.verdicts) else None))
    missing = cells_without_verdict(a.counts, a.verdicts)
    if missing:
        p.append("### Cells without a verdict\n\n" + missing)
    p.append("## Δm with bootstrap CIs\n\n" + _md(a.dm[["dataset", "arch", "variant", "delta_m", "ci_low", "ci_high",
                                                         "sd", "n_seeds", "n_incomplete"]]))
    for dataset in a.datasets:
        p.append(f"## {dataset}\n\n" + dataset_tables(a, dataset, "markdown", alpha) + f"\n{LEGEND}\n")
    sig = a.tests[a.tests["p_adj"] < alpha]
    p.append(f"## Significant per-metric differences against {a.baseline}\n\nFull family in tests.csv "
             f"({len(a.tests)} comparisons).\n\n"
             + _md(sig[["dataset", "arch", "variant", "task", "metric", "diff", "ci_low", "ci_high", "p_t",
                        "p_perm", "p_adj", "hedges_g", "a12"]]))
    x = a.across
    p.append("## Across datasets\n")
    if "friedman" in x:
        f = x["friedman"]
        p.append(f"Friedman χ² = {f['chi2']:.3g} (p = {f['p_chi2']:.3g}); Iman-Davenport F = {f['iman_davenport_f']:.3g} "
                 f"(p = {f['p_iman_davenport']:.3g}) over {f['n_datasets']} datasets and {f['k_variants']} variants; "
                 f"Nemenyi CD = {x['cd']:.3g}.\n\n" + _md(x["ranks"].rename("average rank").reset_index())
                 + "\nPairwise Wilcoxon signed-rank (Holm):\n\n" + _md(x["pairwise"]))
    if "iqm" in x:
        p.append("\nIQM of per-seed Δm (stratified bootstrap CI):\n\n" + _md(x["iqm"]))
        for b, t in x.get("improvement", {}).items():
            p.append(f"\nProbability of improvement over {b}:\n\n" + _md(t))
    if a.budget is not None:
        p.append("## Tuning budget curves\n\nExpected best validation Δm (against the baseline's last-epoch validation "
                 "means) after k tuning trials, with a 90% bootstrap band (Dodge et al., EMNLP 2019); "
                 "budget_curves.csv has every k.\n\n" + _md(_budget_table(a.budget)))
    p.append(f"## Power\n\nSeeds per method for 80% power of the verdicts' test ({a.test}, one-sided, paired, at "
             "α / family) to detect a Δm difference of the margin, 1 and 2 points, from the observed spread of "
             "per-seed differences:\n\n" + _md(_power_table(a, margin, alpha, correction)))
    if figures:
        p.append("## Figures\n\n" + "\n".join(f"![{k}]({v[0]})" for k, v in figures.items()) + "\n")
    return "\n".join(p)


def tuning_budget(store: str | Path, study: str | None, trials: pd.DataFrame, baseline: str = "ew",
                  per: str = "task", seed: int = 0) -> pd.DataFrame | None:
    """Budget curves of the study's tuning stage (:mod:`analysis.budget`), or None without one."""
    if trials is None or not len(trials) or not (trials["stage"].astype(str) == "tune").any():
        return None
    frame = load(store, study=study, stage="tune")
    frame = frame[frame["split"].astype(str) == "val"]
    if frame.empty:
        return None
    scores = tuning_scores(frame, trials, baseline, per)
    return budget_curves(scores, seed=seed) if len(scores) else None


def _budget_table(b: pd.DataFrame) -> pd.DataFrame:
    """Expected best validation Δm at a few budgets, one row per dataset x arch x variant."""
    n = int(b["k"].max())
    ks = sorted({1, 2, 5, 10, 20, 50, n} & set(range(1, n + 1)))
    rows = []
    for (dataset, arch, variant), g in b.groupby(["dataset", "arch", "variant"], sort=True):
        g = g.set_index("k")
        rows.append({"dataset": dataset, "arch": arch, "variant": variant, "trials": int(g["n_trials"].iloc[0]),
                     **{f"k={k}": (f"{g.loc[k, 'expected']:+.2f} [{g.loc[k, 'low']:+.2f}, {g.loc[k, 'high']:+.2f}]"
                                   if k in g.index else "–") for k in ks}})
    return pd.DataFrame(rows)


def write_report(store: str | Path, out: str | Path, baseline: str = "ew", study: str | None = None,
                 epoch: str | int = "best-val", figures: bool = True, margin: float = 0.5, alpha: float = 0.05,
                 correction: str = "holm", per: str = "task", n_resamples: int = 2000, test: str = "t",
                 bayes: bool = False) -> Path:
    """Analyse ``store`` and write ``out/index.md``, CSVs, ``out/latex/*.tex`` and ``out/figures/*``."""
    trials = load_trials(store, study=study)
    try:
        a = analyse_store(store, study=study, trials=trials, baseline=baseline, epoch=epoch, margin=margin,
                          alpha=alpha, correction=correction, per=per, n_resamples=n_resamples, test=test,
                          curves=figures, bayes=bayes)
    except AnalysisError as err:
        if not len(trials) or not any(m in str(err) for m in ("no metric rows", "no metrics Parquet files")):
            raise
        _counts_only_report(store, Path(out), study, trials)  # raises NothingCompleted (exit 1)
    a.budget = tuning_budget(store, study, trials, baseline, per, seed=0)
    if a.budget is not None:
        a.notes += order_changes(a.budget)
    out = Path(out)
    (out / "latex").mkdir(parents=True, exist_ok=True)
    for name, df in {"delta_m": a.dm, "tests": a.tests.drop(columns=["x", "y", "clusters"], errors="ignore"), "verdicts": a.verdicts,
                     "counts": a.counts, "selected": a.selected,
                     **({"budget_curves": a.budget} if a.budget is not None else {})}.items():
        df.to_csv(out / f"{name}.csv", index=False)
    for dataset in a.datasets:
        (out / "latex" / f"{dataset}.tex").write_text(dataset_tables(a, dataset, "latex", alpha))
    figs: dict[str, list[str]] = {}
    if figures:
        fdir = out / "figures"
        figs["delta_m_ci"] = [str(p.relative_to(out)) for p in plots.delta_m_ci(a.dm, fdir / "delta_m_ci")]
        for dataset in a.datasets:
            if a.per_seed["variant"].str.contains(":").any():
                figs[f"{dataset} distributions"] = [str(p.relative_to(out)) for p in
                                                    plots.distributions(a.per_seed, dataset, fdir / f"{dataset}_distributions",
                                                                        a.families)]
            if a.budget is not None and (a.budget["dataset"] == dataset).any():
                figs[f"{dataset} tuning budget"] = [str(p.relative_to(out)) for p in
                                                    plots.budget_curves(a.budget, dataset, fdir / f"{dataset}_budget")]
            if a.curves is not None:
                figs[f"{dataset} validation"] = [str(p.relative_to(out)) for p in
                                                 plots.validation_curves(a.curves, dataset, fdir / f"{dataset}_validation")]
        if "ranks" in a.across and a.across.get("cd_separable"):
            figs["critical difference"] = [str(p.relative_to(out)) for p in plots.cd_diagram(
                a.across["ranks"], a.across["cd"], a.across["cliques"], fdir / "critical_difference")]
    title = f"litmus report: {study or ', '.join(names(a.selected['study']))}"
    text = render_index(a, title, margin, alpha, correction, figs)
    for name in names(a.selected["study"]):  # a sequential final stage: its recorded round-by-round decisions
        seq = sequential.render(sequential.load_decisions(store, name))
        if seq:
            text += f"\n## Sequential verdicts ({name})\n\n{seq}\n"
    (out / "index.md").write_text(text)
    return out / "index.md"


def _counts_only_report(store: str | Path, out: Path, study: str | None, trials: pd.DataFrame) -> None:
    """No trial wrote a metric row: write counts.csv and an index.md with every cell's counts, then say so."""
    studies = names(trials["study"])
    planned = planned_cells(store, study or (studies[0] if len(studies) == 1 else None))
    final = trials[trials["stage"] == "final"] if (trials["stage"] == "final").any() else trials
    index = final.iloc[0:0][["trial_id", "dataset", "arch", "variant", "seed", "status", "study", "stage"]]
    counts = cell_counts(index, final, None, planned)
    out.mkdir(parents=True, exist_ok=True)
    counts.to_csv(out / "counts.csv", index=False)
    title = f"litmus report: {study or ', '.join(studies)}"
    (out / "index.md").write_text(f"# {title}\n\nNo trial completed: nothing to compare. Every cell's trials:\n\n"
                                  f"## Trials per cell\n\n{_md(counts)}\n## Cells without a verdict\n\n"
                                  f"{cells_without_verdict(counts, None)}")
    c = counts[["completed", "failed", "diverged", "missing"]].sum()
    raise NothingCompleted(f"no completed trial in {store}: {int(c['failed'])} failed, {int(c['diverged'])} "
                           f"diverged, {int(c['missing'])} missing over {len(counts)} cells; counts in {out}")


def verdict_summary(v: pd.DataFrame) -> str:
    """Counts of each verdict per baseline, then a compact table: one row per dataset x variant,
    one column per baseline (verdict, Delta-m difference, corrected p)."""
    lines = ["### Verdicts", ""]
    for against, g in v.groupby("against", sort=False):
        counts = g["verdict"].value_counts()
        lines.append(f"- vs {against}: " + ", ".join(f"{int(counts.get(k, 0))} {k}"
                                                    for k in ("better", "worse", "equivalent", "inconclusive")))
    baselines = list(dict.fromkeys(v["against"]))
    lines += ["", "| dataset | variant | " + " | ".join(f"vs {b}" for b in baselines) + " |",
              "|---|---|" + "---|" * len(baselines)]

    def cell(r: pd.Series) -> str:
        p = "" if not np.isfinite(r["p_adj"]) else f", p_adj {r['p_adj']:.2g}"
        lost = ", ".join(f"{int(r[k])} {k}" for k in ("failed", "diverged") if k in r and r[k] > 0)
        return f"{r['verdict']} ({r['diff_delta_m']:+.2f}{p}{', ' + lost if lost else ''})"

    keyed = {(r["dataset"], r["variant"], r["against"]): cell(r) for _, r in v.iterrows()}
    for dataset, variant in sorted(dict.fromkeys(zip(v["dataset"], v["variant"]))):
        cells = [keyed.get((dataset, variant, b), "") for b in baselines]
        lines.append(f"| {dataset} | {variant} | " + " | ".join(cells) + " |")
    test = str(v["test"].iloc[0]) if "test" in v.columns and len(v) else "t"
    kind = "paired t-test" if test == "t" else "exact sign-flip / permutation test"
    lines.append(f"\n(difference in Delta-m points; better / worse: one-sided {kind} on per-seed Delta-m, "
                 "Holm over each baseline's family; equivalent: TOST within the margin; failed and diverged "
                 "trials scored worst; docs/statistics.md)")
    return "\n".join(lines)


def summary_table(store_or_frame: str | Path | pd.DataFrame, baseline: str = "ew", study: str | None = None,
                  alpha: float = 0.05) -> str:
    """Markdown paper-style table(s) per dataset with significance marks (one section per study).

    Works with a single seed per method (says that no test is possible).
    Uses best-val selection when a validation split exists, else the last epoch.
    """
    parts = []
    for s, epoch, a in _summary_analyses(store_or_frame, baseline, study, alpha):
        parts.append(f"## Study {s} (epoch: {epoch}, baseline {baseline})\n")
        parts += [f"- {n}" for n in a.notes]
        for dataset in a.datasets:
            parts.append(f"\n### {dataset}\n\n" + dataset_tables(a, dataset, "markdown", alpha))
        if len(a.verdicts):
            parts.append("\n" + verdict_summary(a.verdicts))
        missing = cells_without_verdict(a.counts, a.verdicts)
        if missing:
            parts.append("\nCells without a verdict:\n\n" + missing)
        parts.append(f"\n{LEGEND}\n")
    return "\n".join(parts)


def _summary_analyses(store_or_frame: str | Path | pd.DataFrame, baseline: str, study: str | None, alpha: float):
    """(study, epoch rule, Analysis) per study: best-val when the study has a validation split, else last."""
    if isinstance(store_or_frame, pd.DataFrame):
        frame = store_or_frame
        if study is not None:
            frame = frame[frame["study"] == study]
        if frame.empty:
            raise AnalysisError("no metric rows to summarise")
        for s, f in frame.groupby("study", observed=True):
            epoch = "best-val" if (f["split"] == "val").any() else "last"
            yield s, epoch, analyse(f, None, baseline=baseline, epoch=epoch, alpha=alpha, n_resamples=500)
        return
    trials = load_trials(store_or_frame, study=study)
    for s, has_val in store_studies(store_or_frame, study).items():
        epoch = "best-val" if has_val else "last"
        yield s, epoch, analyse_store(store_or_frame, study=s, trials=trials[trials["study"] == s],
                                      baseline=baseline, epoch=epoch, alpha=alpha, n_resamples=500, curves=False)
