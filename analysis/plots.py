"""Figures (matplotlib Agg; each saved as PNG and PDF).

* Delta-m by sampling distribution over seeds (the random-weighting paper's Figure 1);
* validation Delta-m over epochs per method (its Figure 2);
* critical-difference diagram of average ranks (Demsar 2006);
* Delta-m with confidence intervals per method.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .naming import RANDOM_METHODS, method_of  # noqa: E402


def save(fig, path: str | Path) -> list[Path]:
    """Save ``fig`` as ``path``.png and ``path``.pdf, close it, return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, bbox_inches="tight", dpi=150 if p.suffix == ".png" else None)
    plt.close(fig)
    return out


def distributions(per_seed: pd.DataFrame, dataset: str, path: str | Path) -> list[Path]:
    """Box plot + points of per-seed Delta-m for each sampling distribution of RLW / RGW (Figure 1)."""
    d = per_seed[(per_seed["dataset"] == dataset)
                 & per_seed["variant"].map(lambda v: method_of(v) in RANDOM_METHODS and ":" in v)]
    variants = sorted(d["variant"].unique())
    fig, ax = plt.subplots(figsize=(1.2 * max(len(variants), 3) + 1, 3.2))
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
    """Mean validation Delta-m over epochs per variant with a +-1 std band over seeds (Figure 2)."""
    d = curves[curves["dataset"] == dataset]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups = list(d.groupby("variant", observed=True))
    # distinct colours for up to 20 variants (tab10 repeats after 10), line styles beyond
    colours = plt.get_cmap("tab20").colors
    for i, (variant, g) in enumerate(groups):
        agg = g.groupby("epoch")["val_delta_m"].agg(["mean", "std"]).reset_index()
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


def cd_diagram(ranks: pd.Series, cd: float, cliques: list[list[str]], path: str | Path,
               title: str = "") -> list[Path]:
    """Critical-difference diagram: average ranks on an axis, the CD bar, and cliques of
    variants no pair of which differs significantly (Wilcoxon-Holm)."""
    k = len(ranks)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * k))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(hi + 0.3, lo - 0.3)
    ax.set_ylim(-(k / 2 + 2), 1.5)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.15, color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    if np.isfinite(cd):
        ax.hlines(1.0, lo, lo + cd, color="red", lw=2)
        ax.text(lo + cd / 2, 1.15, f"CD = {cd:.2f}", ha="center", fontsize=8, color="red")
    half = (k + 1) // 2
    for i, (name, r) in enumerate(ranks.items()):
        left = i < half
        y = -(i + 1) * 0.5 if left else -(k - i) * 0.5
        x_text = lo - 0.2 if left else hi + 0.2
        ax.plot([r, r, x_text], [0, y, y], color="black", lw=0.7)
        ax.text(x_text, y, f"{name} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=8)
    for j, c in enumerate(cliques):
        rs = ranks[c]
        ax.hlines(-0.2 - 0.12 * j, rs.min() - 0.03, rs.max() + 0.03, color="tab:blue", lw=3)
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)


def delta_m_ci(dm: pd.DataFrame, path: str | Path, title: str = "") -> list[Path]:
    """Horizontal error bars: Delta-m and its bootstrap CI per variant, one panel per dataset x arch."""
    blocks = list(dm.groupby(["dataset", "arch"], sort=True))
    fig, axes = plt.subplots(1, max(len(blocks), 1), figsize=(4 * max(len(blocks), 1), 0.35 * dm["variant"].nunique() + 1.2),
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
