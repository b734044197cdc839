"""Paper-style tables (Lin et al., random-weighting paper, Tables 1, 3 and 4) in Markdown, LaTeX
(booktabs) and CSV from one set of numbers.

Table 1 style: rows grouped (baseline / loss balancing / gradient balancing /
random), per task and metric ``mean +- std`` over seeds, Delta-m, seed count;
**bold** = best in its group, a significance mark against the baseline
(``↑`` better, ``↓`` worse: two-sided test of the report's kind -- t by default -- corrected p < alpha), and notes
on failed/diverged trials and missing seeds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .counts import count_note
from .errors import AnalysisError
from .naming import GROUP_LABELS, GROUP_ORDER, group_of, split_combination
from .stats import DELTA

FORMATS = ("markdown", "latex", "csv")
UP, DOWN = "↑", "↓"
LEGEND = (f"mean ± std over seeds; **bold**: best in group; {UP}/{DOWN}: significantly better/worse "
          "than the baseline (two-sided test, t or permutation as chosen, corrected p < alpha); Δm in percent.")


def _p_adj(cmp: pd.DataFrame) -> pd.Series:
    """The corrected p of the comparison's test (``p_adj``; older frames: the permutation test's)."""
    return cmp["p_adj"] if "p_adj" in cmp.columns else cmp["p_perm_adj"]


def num(x: float) -> str:
    """Compact number: 2 decimals above 1, 4 below (as the paper prints them)."""
    if x is None or not np.isfinite(x):
        return "–"
    a = abs(x)
    return f"{x:.1f}" if a >= 100 else f"{x:.2f}" if a >= 1 else f"{x:.4f}"


def _order(variants: list[str], baseline: str, family: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    groups = {v: ("baseline" if v == baseline else group_of(v, family)) for v in variants}
    return sorted(((groups[v], v) for v in variants), key=lambda gv: (GROUP_ORDER.index(gv[0]), gv[1]))


def table_data(selected: pd.DataFrame, dataset: str, baseline: str, dm: pd.DataFrame,
               cmp: pd.DataFrame | None = None, counts: pd.DataFrame | None = None,
               arch: str | None = None, alpha: float = 0.05, family: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Long numbers behind a Table-1 style table: one row per variant x column (task/metric or delta_m);
    ``family``: variant -> family from the trials table (``naming.families``)."""
    s = selected[selected["dataset"].astype(str) == dataset]
    if arch is not None:
        s = s[s["arch"].astype(str) == arch]
    if s.empty:
        raise AnalysisError(f"no selected values for dataset {dataset!r}" + (f" and arch {arch!r}" if arch else ""))
    s = s.astype({"variant": str, "task": str, "metric": str})
    agg = s.groupby(["variant", "task", "metric", "higher_is_better"], observed=True, sort=False)["value"].agg(
        ["mean", "std", "count"]).reset_index()
    d = dm[(dm["dataset"] == dataset) & ((dm["arch"] == arch) if arch else True)]
    drow = pd.DataFrame({"variant": d["variant"], "task": DELTA, "metric": DELTA, "higher_is_better": True,
                         "mean": d["delta_m"], "std": d["sd"], "count": d["n_seeds"]})
    out = pd.concat([agg, drow], ignore_index=True)
    out["group"] = [("baseline" if v == baseline else group_of(v, family)) for v in out["variant"]]
    out["mark"] = ""
    if cmp is not None and len(cmp):
        c = cmp[(cmp["dataset"] == dataset) & ((cmp["arch"] == arch) if arch else True)]
        sig = c[_p_adj(c) < alpha]
        better = np.where(sig["higher_is_better"], 1.0, -1.0) * sig["diff"] > 0
        marks = dict(zip(zip(sig["variant"], sig["task"], sig["metric"]), np.where(better, UP, DOWN)))
        out["mark"] = [marks.get((v, t, m), "") for v, t, m in zip(out["variant"], out["task"], out["metric"])]
    signed = np.where(out["higher_is_better"], 1.0, -1.0) * out["mean"]
    out["_s"] = signed
    best = out[out["group"] != "baseline"].groupby(["group", "task", "metric"])["_s"].transform("max")
    out["best"] = False
    out.loc[best.index, "best"] = np.isclose(out.loc[best.index, "_s"], best) & (
        out[out["group"] != "baseline"].groupby(["group", "task", "metric"])["_s"].transform("size") > 1)
    out["note"] = ""
    if counts is not None and len(counts):
        cc = counts[(counts["dataset"] == dataset) & ((counts["arch"] == arch) if arch else True)]
        notes = {r["variant"]: count_note(r) for _, r in cc.iterrows()}
        out["note"] = out["variant"].map(notes).fillna("")
    return out.drop(columns="_s")


def _columns(data: pd.DataFrame) -> list[tuple[str, str]]:
    cols = data.loc[data["task"] != DELTA, ["task", "metric"]].drop_duplicates()
    return list(cols.itertuples(index=False, name=None)) + [(DELTA, DELTA)]


def _cell(r: pd.Series | None, fmt: str, is_delta: bool, single: bool) -> str:
    if r is None:
        return "–"
    if is_delta:
        text = "–" if not np.isfinite(r["mean"]) else f"{round(r['mean'], 2) + 0.0:+.2f}"
    else:
        text = num(r["mean"]) if single or not np.isfinite(r["std"]) else (
            f"{num(r['mean'])} ± {num(r['std'])}" if fmt == "markdown" else f"{num(r['mean'])} $\\pm$ {num(r['std'])}")
    if r["best"]:
        text = f"**{text}**" if fmt == "markdown" else f"\\textbf{{{text}}}"
    if r["mark"]:
        text += r["mark"] if fmt == "markdown" else ("$^{\\uparrow}$" if r["mark"] == UP else "$^{\\downarrow}$")
    return text


def _tex(s: str) -> str:
    return s.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")


def render_paper_table(data: pd.DataFrame, baseline: str, fmt: str = "markdown", caption: str = "") -> str:
    """Render :func:`table_data` output as a Table-1 style Markdown or LaTeX table, or CSV."""
    if fmt not in FORMATS:
        raise AnalysisError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "csv":
        return data.to_csv(index=False)
    cols = _columns(data)
    single = bool((data.loc[data["task"] != DELTA, "count"] <= 1).all())
    idx = {(r["variant"], r["task"], r["metric"]): r for r in data.to_dict("records")}
    n = data[data["task"] == DELTA].set_index("variant")["count"].to_dict()
    notes = data.drop_duplicates("variant").set_index("variant")["note"].to_dict()
    rows = []
    groups = dict(zip(data["variant"], data["group"]))
    for group, v in _order(list(data["variant"].unique()), baseline, groups):
        cells = [_cell(idx.get((v, t, m)), fmt, t == DELTA, single) for t, m in cols]
        rows.append((group, v, cells, str(int(n.get(v, 0))), notes.get(v, "")))
    heads = [f"{t} {m}" if t != DELTA else "Δm%" for t, m in cols]
    if fmt == "markdown":
        lines = ["| Group | Method | " + " | ".join(heads) + " | n | notes |",
                 "|---|---|" + "---:|" * len(heads) + "---:|---|"]
        last = None
        for group, v, cells, nn, note in rows:
            label = GROUP_LABELS[group] if group != last else ""
            last = group
            lines.append(f"| {label} | {v} | " + " | ".join(cells) + f" | {nn} | {note} |")
        return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"
    tasks = []
    for t, m in cols:
        if tasks and tasks[-1][0] == t:
            tasks[-1][1] += 1
        else:
            tasks.append([t, 1])
    spec = "ll" + "r" * len(cols) + "r"
    top = " & ".join(["", ""] + [f"\\multicolumn{{{k}}}{{c}}{{{_tex(t if t != DELTA else '')}}}" for t, k in tasks] + [""])
    rules, start = [], 3
    for t, k in tasks:
        if t != DELTA:
            rules.append(f"\\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    sub = " & ".join(["Group", "Method"] + [_tex(m) if t != DELTA else "$\\Delta_m$\\%" for t, m in cols] + ["n"])
    body, last = [], None
    for group, v, cells, nn, _ in rows:
        if last is not None and group != last:
            body.append("\\midrule")
        label = GROUP_LABELS[group] if group != last else ""
        last = group
        body.append(" & ".join([_tex(label), _tex(v)] + cells + [nn]) + " \\\\")
    out = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
           top + " \\\\", "".join(rules), sub + " \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}"]
    if caption:
        out.append(f"\\caption{{{_tex(caption)}}}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def _grid(values: pd.DataFrame, fmt: str, corner: str, caption: str = "") -> str:
    """Render a small index x columns grid of already formatted strings."""
    if fmt == "csv":
        return values.to_csv()
    if fmt == "markdown":
        lines = [f"| {corner} | " + " | ".join(map(str, values.columns)) + " |",
                 "|---|" + "---:|" * len(values.columns)]
        lines += [f"| {i} | " + " | ".join(values.loc[i]) + " |" for i in values.index]
        return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"
    tex = lambda s: _tex(str(s)).replace(UP, "$^{\\uparrow}$").replace(DOWN, "$^{\\downarrow}$")
    out = ["\\begin{table}[t]", "\\centering", f"\\begin{{tabular}}{{l{'r' * len(values.columns)}}}", "\\toprule",
           " & ".join([tex(corner)] + [tex(c) for c in values.columns]) + " \\\\", "\\midrule"]
    out += [" & ".join([tex(i)] + [tex(x) for x in values.loc[i]]) + " \\\\" for i in values.index]
    out += ["\\bottomrule", "\\end{tabular}"] + ([f"\\caption{{{_tex(caption)}}}"] if caption else []) + ["\\end{table}"]
    return "\n".join(out) + "\n"


def _dm_text(dm: pd.DataFrame, marks: dict) -> list[str]:
    return [("–" if not np.isfinite(x) else f"{round(x, 2) + 0.0:+.2f}%") + marks.get(k, "")
            for x, k in zip(dm["delta_m"], zip(dm["dataset"], dm["arch"], dm["variant"]))]


def _marks(cmp: pd.DataFrame | None, alpha: float) -> dict:
    if cmp is None or not len(cmp):
        return {}
    c = cmp[(cmp["task"] == DELTA) & (_p_adj(cmp) < alpha)]
    return {k: (UP if d > 0 else DOWN) for k, d in zip(zip(c["dataset"], c["arch"], c["variant"]), c["diff"])}


def combination_table(dm: pd.DataFrame, dataset: str, fmt: str = "markdown", cmp: pd.DataFrame | None = None,
                      alpha: float = 0.05, caption: str = "", family: Mapping[str, str] | None = None) -> str:
    """Table-3 style: Delta-m of ``LOSS+GRAD`` combinations, rows = gradient part, columns = loss part."""
    d = dm[dm["dataset"] == dataset].copy()
    if d.empty:
        raise AnalysisError(f"no Delta-m rows for dataset {dataset!r}")
    parts = [split_combination(v, family) for v in d["variant"]]
    d["loss"] = [p[0] for p in parts]
    d["grad"] = [p[1] for p in parts]
    d["text"] = _dm_text(d, _marks(cmp, alpha))
    grid = d.pivot_table(index="grad", columns="loss", values="text", aggfunc="first").fillna("–")
    rows = ["vanilla"] + sorted(r for r in grid.index if r != "vanilla")
    cols = (["ew"] if "ew" in grid.columns else []) + sorted(c for c in grid.columns if c != "ew")
    return _grid(grid.reindex(index=[r for r in rows if r in grid.index], columns=cols), fmt, "grad \\ loss", caption)


def architecture_table(dm: pd.DataFrame, dataset: str, fmt: str = "markdown", cmp: pd.DataFrame | None = None,
                       alpha: float = 0.05, caption: str = "", family: Mapping[str, str] | None = None) -> str:
    """Table-4 style: Delta-m per variant (rows) and architecture (columns)."""
    d = dm[dm["dataset"] == dataset].copy()
    if d.empty:
        raise AnalysisError(f"no Delta-m rows for dataset {dataset!r}")
    d["text"] = _dm_text(d, _marks(cmp, alpha))
    grid = d.pivot_table(index="variant", columns="arch", values="text", aggfunc="first").fillna("–")
    order = [v for _, v in _order(list(grid.index), d["baseline"].iloc[0], family)]
    return _grid(grid.reindex(index=order), fmt, "method", caption)
