"""litmus.analysis: read a results store and tell, with statistics, whether a method beats random weighting.

Reads only the Parquet store (never imports ``trainables``, ``study`` or Ray).
See docs/statistics.md. Public API::

    frame = analysis.load(store, study=None, stage=None, dataset=None)
    trials = analysis.load_trials(store)
    sel = analysis.select(frame, split="test", epoch="best-val", baseline="ew")
    dm = analysis.delta_m(sel, baseline="ew", per="task")
    tests = analysis.compare(sel, baseline="rlw", reference="ew", correction="holm")
    v = analysis.verdicts(sel, against="rlw", reference="ew", margin=0.5, trials=trials)
    ok = analysis.check_design(seeds=5, test="t", family_size=28).possible
    print(analysis.summary_table(store, baseline="ew"))
    analysis.write_report(store, "report/")

The names are imported on first use (PEP 562): ``import analysis.schema`` (what the
orchestrator and ``litmus status`` need) loads neither pandas nor scipy/statsmodels.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: public name -> the submodule that defines it
_WHERE: dict[str, str] = {
    "cell_counts": "counts",
    "delta_m": "delta_m", "metric_weights": "delta_m", "per_seed": "delta_m",
    "AnalysisError": "errors",
    "RANDOM_METHODS": "naming", "families": "naming", "group_of": "naming", "resolve_baseline": "naming",
    "variant_name": "naming",
    "DesignCheck": "power", "check_design": "power", "min_p_independent": "power", "min_p_paired": "power",
    "seeds_needed": "power",
    "average_ranks": "ranks", "critical_difference": "ranks", "friedman": "ranks", "pairwise_wilcoxon": "ranks",
    "score_matrix": "ranks",
    "Analysis": "report", "analyse": "report", "dataset_tables": "report", "summary_table": "report",
    "write_report": "report",
    "improvement_ci": "robust", "iqm": "robust", "iqm_ci": "robust", "probability_of_improvement": "robust",
    "best_val_epochs": "select", "select": "select", "validation_scores": "select",
    "compare": "stats",
    "load": "store", "load_trials": "store", "load_weights": "store",
    "verdicts": "verdict",
}

__all__ = [
    "AnalysisError", "Analysis", "load", "load_trials", "load_weights", "select", "best_val_epochs",
    "validation_scores", "delta_m", "per_seed", "metric_weights", "compare", "verdicts", "cell_counts",
    "friedman", "average_ranks", "critical_difference", "pairwise_wilcoxon", "score_matrix", "iqm", "iqm_ci",
    "probability_of_improvement", "improvement_ci", "min_p_independent", "min_p_paired", "seeds_needed",
    "check_design", "DesignCheck",
    "analyse", "write_report", "summary_table", "dataset_tables", "group_of", "variant_name",
    "resolve_baseline", "families", "RANDOM_METHODS",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``analysis.select`` and ``analysis.delta_m`` are functions named like their modules: importing the
    module (``from analysis.select import ...``) must not bind the module over the function's name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
