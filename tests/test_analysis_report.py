"""Tables, report, figures and the CLI hook."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import analysis
from analysis import cli
from analysis.tables import num

from analysis_fixtures import SyntheticStudy, make_store

EFFECTS = {"ew": 0.0, "uw": 0.3, "cagrad": 2.0, "rlw+cagrad:normal": 2.5, "rlw:normal": 1.0, "rlw:uniform": 0.8}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = SyntheticStudy({d: EFFECTS for d in ("a", "b", "c")}, seeds=list(range(5)), epochs=4,
                status={("a", "uw", 4): "diverged"}, families={"cagrad": "gradient"})
    return make_store(tmp_path_factory.mktemp("s") / "store", spec)


def _parser():
    p = argparse.ArgumentParser(prog="litmus")
    cli.register(p.add_subparsers(dest="command", required=True))
    return p


def test_paper_table_markdown_and_latex(store):
    a = analysis.analyse(analysis.load(store), analysis.load_trials(store), n_resamples=200)
    md = analysis.dataset_tables(a, "a", "markdown")
    lines = md.splitlines()
    assert any(l.startswith("| Baseline | ew |") for l in lines)
    assert any("| Loss Bal. | uw |" in l and "1 diverged" in l for l in lines)
    assert any("| Gradient Bal. | cagrad |" in l for l in lines)
    assert any("| Random | rlw:normal |" in l for l in lines)
    assert "**" in md  # best in group marked
    assert "grad \\ loss" in md  # Table-3 style grid for the rlw+cagrad combination
    tex = analysis.dataset_tables(a, "a", "latex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\textbf" in tex
    assert "\\cmidrule" in tex and "$\\pm$" in tex
    csv = analysis.dataset_tables(a, "a", "csv")
    assert csv.splitlines()[0].startswith("variant,task,metric")


def test_significance_marks_with_enough_seeds(tmp_path):
    spec = SyntheticStudy({"d": {"ew": 0.0, "big": 5.0}}, seeds=list(range(8)), epochs=2, seed_sd=0.2)
    s = make_store(tmp_path / "s", spec)
    text = analysis.summary_table(s)
    assert "↑" in text and "better" in text


def test_architecture_table(tmp_path):
    from analysis.synthetic import metrics_frame, trials_frame, write_store
    import pandas as pd
    frames, trials = [], []
    for arch, shift in (("hps", 0.0), ("mtan", 1.0)):
        spec = SyntheticStudy({"d": {"ew": shift, "rlw:normal": shift + 1}}, seeds=[0, 1, 2], epochs=2, arch=arch)
        frames.append(metrics_frame(spec))
        trials.append(trials_frame(spec))
    s = write_store(tmp_path / "s", pd.concat(frames), pd.concat(trials))
    sel = analysis.select(analysis.load(s))
    dm = analysis.delta_m(sel, baseline="ew", baseline_arch="hps")
    assert dm.set_index(["arch", "variant"]).loc[("mtan", "ew"), "delta_m"] == pytest.approx(1.0, abs=0.5)
    from analysis.tables import architecture_table
    md = architecture_table(dm, "d")
    assert "| method | hps | mtan |" in md


def test_report_cli_writes_index_latex_and_figures(store, tmp_path, monkeypatch):
    import matplotlib.image
    from analysis import plots

    figures = {}
    real_save = plots.save

    def keep(fig, path):  # the figure objects, to read back what was drawn
        figures[Path(path).name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    out = tmp_path / "rep"
    args = _parser().parse_args(["report", str(store), "--out", str(out)])
    assert args.func(args) == 0
    index = (out / "index.md").read_text()
    for section in ("## Verdicts", "## Trials per cell", "## Across datasets", "## Power", "Friedman"):
        assert section in index
    assert (out / "latex" / "a.tex").exists() and (out / "tests.csv").exists()
    for name in ("delta_m_ci", "critical_difference", "a_distributions", "a_validation"):
        png = matplotlib.image.imread(out / "figures" / f"{name}.png")
        assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100 and png.std() > 0.01  # not blank
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert f"figures/{name}.png" in index

    # what the figures show is the data: Delta-m of each variant close to its planted effect (EFFECTS)
    tol = 0.7  # seed noise 0.5% per metric, 5 seeds
    panels = figures["delta_m_ci"].axes
    assert [a.get_title() for a in panels] == ["a (hps)", "b (hps)", "c (hps)"]
    for ax in panels:
        xs = ax.lines[0].get_xdata()
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert sorted(labels) == sorted(EFFECTS) and list(xs) == sorted(xs)
        for label, x in zip(labels, xs):
            assert x == pytest.approx(EFFECTS[label], abs=tol), label
    (dist,) = figures["a_distributions"].axes
    labels = [t.get_text() for t in dist.get_xticklabels()]
    assert labels == ["rlw:normal", "rlw:uniform"]
    for i, points in enumerate(dist.collections):  # one scatter of per-seed Delta-m per distribution
        y = points.get_offsets()[:, 1]
        assert len(y) == 5 and float(y.mean()) == pytest.approx(EFFECTS[labels[i]], abs=tol)
    (val,) = figures["a_validation"].axes
    curves = {line.get_label(): line for line in val.lines if not line.get_label().startswith("_")}
    assert set(curves) == set(EFFECTS)
    for label, line in curves.items():
        assert list(line.get_xdata()) == [1, 2, 3, 4]
        assert line.get_ydata()[-1] == pytest.approx(EFFECTS[label], abs=tol), label
    texts = [t.get_text() for t in figures["critical_difference"].axes[0].texts]
    ranks = {t.rsplit(" (", 1)[0]: float(t.rsplit("(", 1)[1].rstrip(")")) for t in texts if t.endswith(")")}
    assert set(ranks) == set(EFFECTS)
    assert ranks["rlw+cagrad:normal"] < ranks["rlw:normal"] < ranks["uw"] < ranks["ew"]  # effects 2.5 > 1 > 0.3 > 0


def test_table_cli_and_errors(store, tmp_path, capsys):
    args = _parser().parse_args(["table", str(store), "--dataset", "b", "--format", "latex", "--epoch", "last"])
    assert args.func(args) == 0
    assert "\\begin{tabular}" in capsys.readouterr().out
    args = _parser().parse_args(["table", str(store), "--dataset", "b", "--baseline", "nash_mtl"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("litmus: error: ") and "nash_mtl" in err and "\n" not in err
    args = _parser().parse_args(["report", str(tmp_path / "nowhere"), "--no-figures"])
    assert args.func(args) == 2


def test_number_format():
    assert num(0.38451) == "0.3845" and num(23.5737) == "23.57" and num(float("nan")) == "–"


def test_report_test_flag_selects_the_verdict_test(tmp_path) -> None:
    """`litmus report --test perm` runs the verdicts on the exact sign-flip test; the default is the t-test."""
    import argparse

    import pandas as pd

    from analysis.cli import register

    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0.0, "rlw:normal": 0.0, "big": 5.0}}, seeds=list(range(4)),
                                            epochs=2, seed_sd=0.2))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for test in ("perm", "t"):
        out = tmp_path / f"rep-{test}"
        flag = ["--test", test] if test == "perm" else []
        args = parser.parse_args(["report", str(store), "--out", str(out), "--no-figures", *flag])
        assert args.func(args) == 0
        v = pd.read_csv(out / "verdicts.csv")
        assert len(v) and set(v["test"]) == {test}
    # 4 paired seeds: the exact test cannot decide, the t-test can for a large effect
    v_perm = pd.read_csv(tmp_path / "rep-perm" / "verdicts.csv")
    v_t = pd.read_csv(tmp_path / "rep-t" / "verdicts.csv")
    big = lambda v: v[(v["variant"] == "big") & (v["against"] == "ew")]["verdict"].item()  # noqa: E731
    assert big(v_perm) == "inconclusive" and big(v_t) == "better"
