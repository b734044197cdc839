"""``litmus train``: one trial without Ray, written to the store as stage ``single``."""

from __future__ import annotations

import traceback
from typing import Any, Callable

from trainables.config import TrainConfig, resolve
from trainables.trainer import Diverged, EpochResult, Trainer

from analysis.schema import Stage, Status
from litmus.errors import InputError

from .ids import trial_id
from .recorder import TrialRecorder
from .store import Store


def headline(result: EpochResult, split: str = "val") -> str:
    """A short per-epoch progress line: mean train loss and the first metric of each task on ``split``."""
    seen: dict[str, str] = {}
    for r in result.rows:
        if r["split"] == split and r["metric"] != "loss" and r["task"] not in seen:
            seen[r["task"]] = f"{r['task']}.{r['metric']}={r['value']:.4g}"
    parts = list(seen.values())
    if len(parts) > 4:
        parts = parts[:4] + [f"(+{len(parts) - 4} tasks)"]
    loss = sum(result.train_losses.values())
    return f"train loss {loss:.4g} | {split}: " + " ".join(parts)


def run_single(
    cfg: TrainConfig,
    store: Store,
    study: str = "adhoc",
    progress: Callable[[str], None] | None = None,
) -> tuple[str, str, list[dict[str, Any]]]:
    """Train ``cfg`` and write it to ``store``; returns (trial_id, status, last epoch's rows).

    Bad input (the config, the data, the pretrained weights: an :class:`InputError`) is refused before
    anything is written; a trial that fails once it is built is recorded as failed, then re-raised."""
    cfg, _ = resolve(cfg)  # validate before anything is loaded
    config = cfg.to_dict()
    rec = TrialRecorder(store, study, Stage.SINGLE, trial_id(study, str(Stage.SINGLE), config), config,
                        total_epochs=cfg.epochs)
    last: list[dict[str, Any]] = []
    say = progress or (lambda s: None)
    try:
        trainer = Trainer(cfg)  # loads the data and the pretrained weights
    except InputError:
        raise  # bad input: refused, nothing written
    except Exception:
        rec.start()
        rec.finish(Status.FAILED, traceback.format_exc(), epochs=0)
        raise
    rec.start()
    try:
        for res in trainer.epochs():
            last = [dict(r, epoch=res.epoch) for r in res.rows]
            rec.epoch(res.epoch, res.rows, res.weights, trainer.stats.summary())
            say(f"epoch {res.epoch}/{cfg.epochs} ({res.seconds:.1f}s) {headline(res)}")
    except Diverged as err:
        rec.finish(Status.DIVERGED, str(err), epochs=trainer.epoch, summary=trainer.stats.summary())
        return rec.trial_id, str(Status.DIVERGED), last
    except Exception:
        rec.finish(Status.FAILED, traceback.format_exc(), epochs=trainer.epoch, summary=trainer.stats.summary())
        raise
    rec.finish(Status.COMPLETED, epochs=trainer.epoch, summary=trainer.stats.summary())
    return rec.trial_id, str(Status.COMPLETED), last


def format_metrics(rows: list[dict[str, Any]], split: str = "test") -> str:
    """A plain table of one split's metrics."""
    sel = [r for r in rows if r["split"] == split]
    if not sel:
        return f"(no {split} metrics)"
    w_task = max(len("task"), *(len(r["task"]) for r in sel))
    w_metric = max(len("metric"), *(len(r["metric"]) for r in sel))
    lines = [f"{'task':<{w_task}}  {'metric':<{w_metric}}  {'value':>10}  better", "-" * (w_task + w_metric + 22)]
    for r in sel:
        arrow = "higher" if r["higher_is_better"] else "lower"
        lines.append(f"{r['task']:<{w_task}}  {r['metric']:<{w_metric}}  {r['value']:>10.4f}  {arrow}")
    return "\n".join(lines)


