"""Convergence check: did training run long enough for the comparison to be about the methods?

If a trial's best validation epoch is its last one, its score was still
improving when training stopped. When that holds for more than half of the
trials of a cell, the comparison measures speed of training, not the methods
(issue 11: 91% of the quickstart's trials peaked at their last of 4 epochs;
trained 30 epochs, RLW and EW were equivalent instead of 5 points apart).
"""

from __future__ import annotations

import pandas as pd

THRESHOLD = 0.5
WARNING = "the training budget is too short: this compares speed of training"
CELL = ["dataset", "arch", "variant"]


def last_epoch_share(best: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x arch x variant: trials, how many peak at their last epoch, and the share.

    ``best``: one row per trial with ``dataset, arch, variant, best_epoch, last_epoch`` (the epoch the
    validation selection chose and the trial's last finished epoch).
    """
    b = best.assign(at_last=best["best_epoch"].to_numpy() >= best["last_epoch"].to_numpy())
    out = b.groupby(CELL, observed=True, sort=True).agg(trials=("at_last", "size"), at_last=("at_last", "sum"))
    out["share_at_last"] = out["at_last"] / out["trials"]
    return out.reset_index()


def convergence_warning(shares: pd.DataFrame, threshold: float = THRESHOLD) -> str | None:
    """One line when any cell has more than ``threshold`` of its trials peaking at their last epoch."""
    bad = shares[shares["share_at_last"] > threshold]
    if bad.empty:
        return None
    worst = bad.sort_values("share_at_last", ascending=False)
    cells = ", ".join(f"{r.dataset}/{r.variant} {r.share_at_last:.0%}" for r in worst.head(4).itertuples())
    total = shares["at_last"].sum() / max(shares["trials"].sum(), 1)
    return (f"{WARNING} ({len(bad)} of {len(shares)} cells have over {threshold:.0%} of their trials at their best "
            f"validation score on their last epoch: {cells}{', ...' if len(bad) > 4 else ''}; {total:.0%} of all "
            "trials). Train longer, or stop on validation with patience.")


def convergence(selected: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame | None:
    """:func:`last_epoch_share` from best-val selected values (their ``epoch`` is the best validation epoch)
    and the trials table (``epochs``: finished epochs = the last epoch). None without a trials table."""
    if trials is None or not len(trials) or "epochs" not in trials.columns or "epoch" not in selected.columns:
        return None
    best = selected.drop_duplicates("trial_id")[["trial_id", "dataset", "arch", "variant", "epoch"]]
    last = trials[["trial_id", "epochs"]].dropna().drop_duplicates("trial_id")
    last = last.assign(trial_id=last["trial_id"].astype(str))
    b = best.assign(trial_id=best["trial_id"].astype(str)).merge(last, on="trial_id", how="inner")
    if b.empty:
        return None
    b = b.rename(columns={"epoch": "best_epoch", "epochs": "last_epoch"})
    return last_epoch_share(b.astype({"dataset": str, "arch": str, "variant": str}))
