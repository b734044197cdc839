"""The saved plan file ``<store>/studies/<name>.json``: its path, atomic write and loading.

JSON only (no torch, no trainables): ``litmus status`` and the resume of a
finished study read the plan through here. What goes in it is built by
study/plan.py (``save_plan``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plan_path(store_root: Path, name: str) -> Path:
    return store_root / "studies" / f"{name}.json"


def load_plan(store_root: Path, name: str | None = None) -> list[dict[str, Any]]:
    """The saved plans of a store (one study or all)."""
    folder = store_root / "studies"
    files = [plan_path(store_root, name)] if name else sorted(folder.glob("*.json"))
    return [json.loads(p.read_text()) for p in files if p.exists()]
