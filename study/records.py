"""Trial records for the store: grouping columns and the one-row trial record."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from analysis.schema import Family, Status
from trainables import weighting


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def group(study: str, stage: str, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """The grouping columns every metric row of the trial carries."""
    return {
        "study": study,
        "stage": stage,
        "trial_id": trial_id,
        "dataset": config["dataset"],
        "arch": config.get("arch", "hps"),
        "method": config.get("method", "ew"),
        "distribution": config.get("distribution"),
        "seed": int(config.get("seed", 0)),
    }


def family(method: str) -> Family:
    """The family of a spec method name, from the method registry (``weighting.family``)."""
    return Family(weighting.family(method))


def trial_record(
    grp: dict[str, Any],
    config: dict[str, Any],
    status: Status | str,
    *,
    epochs: int,
    started_at: str,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    s = summary or {}
    return {
        **grp,
        "family": str(family(grp["method"])),
        "config": config,
        "status": str(Status(status)),
        "error": error,
        "epochs": epochs,
        "wall_time_s": s.get("wall_time_s"),
        "step_time_ms": s.get("step_time_ms"),
        "peak_memory_mb": s.get("peak_memory_mb"),
        "device": s.get("device"),
        "host": host or s.get("host") or socket.gethostname(),
        "node": s.get("node"),
        "gpu_ids": s.get("gpu_ids"),
        "started_at": started_at,
        "finished_at": None if status == Status.RUNNING else now(),
        "versions": s.get("versions"),
        "replicate": config.get("replicate"),
    }
