"""``litmus report`` and ``litmus table``: registered on the ``litmus`` parser by study/cli.py.

``register(subparsers)`` adds both subcommands; each sets ``func`` (returns an
int exit code). :class:`AnalysisError` is printed as one line
``litmus: error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import AnalysisError, NothingCompleted


def _epoch(value: str) -> str | int:
    if value in ("best-val", "last"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected best-val, last or an epoch number, got {value!r}") from None


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except NothingCompleted as err:  # the counts were written: a result, not bad input
            print(f"litmus: {err}", file=sys.stderr)
            return 1
        except AnalysisError as err:
            print(f"litmus: error: {err}", file=sys.stderr)
            return 2
    run.__doc__ = fn.__doc__
    return run


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store directory (or a metrics Parquet file / dataset directory)")
    p.add_argument("--baseline", default="ew", help="baseline variant for Δm and tests (default ew)")
    p.add_argument("--study", default=None, help="study name (required when the store holds several)")
    p.add_argument("--epoch", type=_epoch, default="best-val", help="best-val (default), last, or an epoch number")
    p.add_argument("--margin", type=float, default=0.5, help="equivalence margin in Δm points (default 0.5)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--correction", choices=["holm", "bh"], default="holm")
    p.add_argument("--test", choices=["t", "perm"], default="t",
                   help="test behind the verdicts: t-test on per-seed Δm (paired on shared seeds; default) or "
                        "exact sign-flip / permutation")
    p.add_argument("--bayes", action="store_true",
                   help="add Bayesian P(better) / P(equivalent) / P(worse) per verdict row (correlated t, ROPE = margin)")
    p.add_argument("--per", choices=["task", "metric"], default="task",
                   help="Δm averaging: per task (paper) or over all metrics (Nash-MTL)")


@_guard
def run_report(args: argparse.Namespace) -> int:
    """Write the full report."""
    from .report import write_report
    path = write_report(args.store, args.out, baseline=args.baseline, study=args.study, epoch=args.epoch,
                        figures=not args.no_figures, margin=args.margin, alpha=args.alpha,
                        correction=args.correction, per=args.per, test=args.test, bayes=args.bayes)
    print(path)
    return 0


@_guard
def run_table(args: argparse.Namespace) -> int:
    """Print the tables of one dataset."""
    from .report import analyse, dataset_tables
    from .store import load, load_trials
    frame = load(args.store, study=args.study, dataset=args.dataset)
    a = analyse(frame, load_trials(args.store, study=args.study, dataset=args.dataset), baseline=args.baseline,
                epoch=args.epoch, margin=args.margin, alpha=args.alpha, correction=args.correction, per=args.per,
                n_resamples=500, test=args.test, bayes=args.bayes)
    print(dataset_tables(a, args.dataset, args.format, args.alpha), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``table`` to the ``litmus`` subcommands."""
    rep = subparsers.add_parser("report", help="tables, tests, verdicts and figures of a results store")
    _common(rep)
    rep.add_argument("--out", default="report", help="output directory (default ./report)")
    rep.add_argument("--no-figures", action="store_true", help="skip the figures")
    rep.set_defaults(func=run_report)
    tab = subparsers.add_parser("table", help="paper-style table of one dataset")
    _common(tab)
    tab.add_argument("--dataset", required=True)
    tab.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    tab.set_defaults(func=run_table)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m analysis.cli``) with the same subcommands as ``litmus``."""
    parser = argparse.ArgumentParser(prog="litmus")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
