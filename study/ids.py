"""Deterministic trial ids: a hash of the canonical (sorted-key JSON) trial description."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def trial_id(study: str, stage: str, config: dict[str, Any], **extra: Any) -> str:
    """16 hex digits identifying (study, stage, config, extra keys such as ``replicate``); the same inputs always
    give the same id."""
    digest = hashlib.sha256(canonical({"study": study, "stage": stage, "config": config, **extra}).encode()).hexdigest()
    return f"{stage[0]}{digest[:15]}"
