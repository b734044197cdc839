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
"""

from .counts import cell_counts
from .delta_m import delta_m, metric_weights, per_seed
from .errors import AnalysisError
from .naming import RANDOM_METHODS, families, group_of, resolve_baseline, variant_name
from .power import DesignCheck, check_design, min_p_independent, min_p_paired, seeds_needed
from .ranks import average_ranks, critical_difference, friedman, pairwise_wilcoxon, score_matrix
from .report import Analysis, analyse, dataset_tables, summary_table, write_report
from .robust import improvement_ci, iqm, iqm_ci, probability_of_improvement
from .select import best_val_epochs, select, validation_scores
from .stats import compare
from .store import load, load_trials, load_weights
from .verdict import verdicts

__all__ = [
    "AnalysisError", "Analysis", "load", "load_trials", "load_weights", "select", "best_val_epochs",
    "validation_scores", "delta_m", "per_seed", "metric_weights", "compare", "verdicts", "cell_counts",
    "friedman", "average_ranks", "critical_difference", "pairwise_wilcoxon", "score_matrix", "iqm", "iqm_ci",
    "probability_of_improvement", "improvement_ci", "min_p_independent", "min_p_paired", "seeds_needed",
    "check_design", "DesignCheck",
    "analyse", "write_report", "summary_table", "dataset_tables", "group_of", "variant_name",
    "resolve_baseline", "families", "RANDOM_METHODS",
]
