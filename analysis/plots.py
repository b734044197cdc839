"""Figures (matplotlib's object API, no pyplot: importing this module selects no backend; each saved as PNG and PDF).

* Delta-m by sampling distribution over seeds (the random-weighting paper's Figure 1);
* validation Delta-m over epochs per method (its Figure 2);
* critical-difference diagram of average ranks (Demsar 2006);
* Delta-m with confidence intervals per method.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .naming import group_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _tab20() -> tuple:
    """Distinct colours for up to 20 variants (tab10 repeats after 10). matplotlib is imported when a figure is
    drawn, not with this module: a report without figures (``--no-figures``) never loads it."""
    import matplotlib

    return matplotlib.colormaps["tab20"].colors


def subplots(figsize: tuple[float, float], ncols: int = 1, **kw: Any) -> tuple[Figure, Any]:
    """A figure and its axes, outside pyplot (no global figure registry, nothing to close)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols, **kw)


def save(fig: Figure, path: str | Path) -> list[Path]:
    """Save ``fig`` as ``path``.png and ``path``.pdf, return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, bbox_inches="tight", dpi=150 if p.suffix == ".png" else None)
    return out


def distributions(per_seed: pd.DataFrame, dataset: str, path: str | Path,
                  family: dict[str, str] | None = None) -> list[Path]:
    """Box plot + points of per-seed Delta-m for each sampling distribution of a random weighting alone
    (RLW, RGW, a plugin's; Figure 1). ``family``: :func:`analysis.naming.families` of the trials table;
    without it the name's structure decides (:func:`analysis.naming.group_of`)."""
    d = per_seed[(per_seed["dataset"] == dataset)
                 & per_seed["variant"].map(lambda v: ":" in v and group_of(v, family) == "random")]
    variants = sorted(d["variant"].unique())
    fig, ax = subplots((1.2 * max(len(variants), 3) + 1, 3.2))
    data = [d.loc[d["variant"] == v, "delta_m"].dropna().to_numpy() for v in variants]
    if variants:
        ax.boxplot(data, tick_labels=variants, showmeans=True)
        for i, y in enumerate(data, start=1):
            ax.scatter(np.full(len(y), i) + np.linspace(-0.08, 0.08, len(y)), y, s=10, alpha=0.7)
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("Δm (%)")
    ax.set_title(f"{dataset}: Δm by sampling distribution")
    ax.tick_params(axis="x", rotation=30)
    return save(fig, path)


def validation_curves(curves: pd.DataFrame, dataset: str, path: str | Path) -> list[Path]:
    """Mean validation Delta-m over epochs per variant with a +-1 std band over seeds (Figure 2).

    ``curves``: per trial x epoch ``val_delta_m`` (:func:`analysis.validation_scores`), or already
    aggregated per variant x epoch (``mean``, ``std``: :func:`analysis.select.store_selection`)."""
    d = curves[curves["dataset"] == dataset]
    fig, ax = subplots((6, 3.5))
    groups = list(d.groupby("variant", observed=True))
    colours = _tab20()  # line styles beyond 20 variants
    for i, (variant, g) in enumerate(groups):
        agg = g if "mean" in g.columns else g.groupby("epoch")["val_delta_m"].agg(["mean", "std"]).reset_index()
        colour = colours[(2 * i) % 20 + (2 * i) // 20 % 2]
        ax.plot(agg["epoch"], agg["mean"], label=str(variant), lw=1.2, color=colour,
                linestyle=("-", "--", ":")[i // 20 % 3])
        ax.fill_between(agg["epoch"], agg["mean"] - agg["std"].fillna(0), agg["mean"] + agg["std"].fillna(0),
                        alpha=0.15, color=colour)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Δm (%)")
    ax.set_title(f"{dataset}: validation performance")
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def budget_curves(curves: pd.DataFrame, dataset: str, path: str | Path) -> list[Path]:
    """Expected best validation Delta-m after k tuning trials per variant with its bootstrap band
    (Dodge et al. 2019; :func:`analysis.budget.budget_curves`)."""
    d = curves[curves["dataset"] == dataset]
    fig, ax = subplots((6, 3.5))
    colours = _tab20()
    for i, ((arch, variant), g) in enumerate(d.groupby(["arch", "variant"], observed=True)):
        colour = colours[(2 * i) % 20 + (2 * i) // 20 % 2]
        label = str(variant) if d["arch"].nunique() == 1 else f"{variant} ({arch})"
        ax.plot(g["k"], g["expected"], label=label, lw=1.2, color=colour, linestyle=("-", "--", ":")[i // 20 % 3])
        ax.fill_between(g["k"], g["low"], g["high"], alpha=0.12, color=colour)
    ax.set_xlabel("tuning trials k")
    ax.set_ylabel("expected best validation Δm (%)")
    ax.set_title(f"{dataset}: tuning budget curves")
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def cd_can_separate(k: int, n: int, cd: float, wilcoxon_floor: float, family: int, alpha: float) -> bool:
    """Whether a critical-difference diagram can show any difference: the Nemenyi CD is
    shorter than the widest possible rank gap (k - 1), or a Holm-corrected exact Wilcoxon
    p-value can fall below alpha (its floor is under alpha / family)."""
    return (np.isfinite(cd) and cd < k - 1) or wilcoxon_floor < alpha / max(family, 1)


def _cd_rows(ranks: pd.Series) -> list[tuple[str, float, int, bool]]:
    """Label layout of a CD diagram: (name, rank, row, on_left). The better half is labelled on
    the left, nearest-to-the-end variant on the top row, so every elbow line runs below the
    ones before it and no line crosses another line or a label."""
    items = sorted(ranks.items(), key=lambda kv: kv[1])
    half = (len(items) + 1) // 2
    left = [(n, r, i + 1, True) for i, (n, r) in enumerate(items[:half])]
    right = [(n, r, i + 1, False) for i, (n, r) in enumerate(reversed(items[half:]))]
    return left + right


def cd_diagram(ranks: pd.Series, cd: float, cliques: list[list[str]], path: str | Path,
               title: str = "") -> list[Path]:
    """Critical-difference diagram (Demsar 2006): average ranks on an axis (1 = best, on the
    left), the Nemenyi CD bar when it is shorter than the axis, and bars joining cliques of
    variants no pair of which differs significantly (Wilcoxon-Holm). Labels sit outside the
    axis and elbow lines never cross a label or each other."""
    k = len(ranks)
    lo, hi = 1, max(k, 2)
    rows = _cd_rows(ranks)
    n_rows = max(r[2] for r in rows) if rows else 1
    row_h, clique_h = 0.32, 0.14
    top_clique = -0.25
    first_row = top_clique - clique_h * max(len(cliques), 1) - 0.2
    bottom = first_row - row_h * (n_rows - 1) - 0.3
    fig, ax = subplots((7.5, 0.9 + 0.42 * (n_rows + 0.5 * max(len(cliques), 1))))
    ax.set_xlim(lo - 0.05 * (hi - lo) - 1.6, hi + 0.05 * (hi - lo) + 1.6)
    ax.set_ylim(bottom, 0.9 if np.isfinite(cd) and cd < hi - lo else 0.45)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.08, color="black", lw=1)
        ax.text(r, 0.13, str(r), ha="center", va="bottom", fontsize=8)
    if np.isfinite(cd) and cd < hi - lo:
        ax.hlines(0.6, lo, lo + cd, color="tab:red", lw=2)
        ax.vlines([lo, lo + cd], 0.55, 0.65, color="tab:red", lw=1)
        ax.text(lo + cd / 2, 0.68, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8, color="tab:red")
    for name, r, row, left in rows:
        y = first_row - row_h * (row - 1)
        x_end = lo - 0.05 * (hi - lo) - 0.1 if left else hi + 0.05 * (hi - lo) + 0.1
        ax.plot([r, r, x_end], [0, y, y], color="black", lw=0.7)
        ax.text(x_end + (-0.05 if left else 0.05), y, f"{name} ({r:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    for j, c in enumerate(cliques):
        rs = ranks[c]
        y = top_clique - clique_h * j
        ax.hlines(y, rs.min() - 0.04, rs.max() + 0.04, color="tab:blue", lw=3)
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)


def delta_m_ci(dm: pd.DataFrame, path: str | Path, title: str = "") -> list[Path]:
    """Horizontal error bars: Delta-m and its bootstrap CI per variant, one panel per dataset x arch."""
    blocks = list(dm.groupby(["dataset", "arch"], sort=True))
    fig, axes = subplots((4 * max(len(blocks), 1), 0.35 * dm["variant"].nunique() + 1.2), max(len(blocks), 1),
                         squeeze=False)
    for ax, ((dataset, arch), g) in zip(axes[0], blocks):
        g = g.sort_values("delta_m")
        y = np.arange(len(g))
        err = np.vstack([g["delta_m"] - g["ci_low"], g["ci_high"] - g["delta_m"]])
        ax.errorbar(g["delta_m"], y, xerr=np.nan_to_num(np.abs(err)), fmt="o", ms=3, capsize=2)
        ax.set_yticks(y, g["variant"])
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("Δm (%)")
        ax.set_title(f"{dataset} ({arch})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)
