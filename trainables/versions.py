"""Versions recorded with every trial: litmus, torch, ray, git sha, and the source hash of each plugin."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the source tree litmus runs from (``LITMUS_GIT_SHA`` wins), or None outside a checkout."""
    if os.environ.get("LITMUS_GIT_SHA"):
        return os.environ["LITMUS_GIT_SHA"]
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | dict[str, str] | None]:
    """Library versions, the git sha, and ``plugins``: ``module -> sha256`` of the plugin code loaded here."""
    from .plugins import source_hashes

    out: dict[str, str | dict[str, str] | None] = dict(_library_versions())
    hashes = source_hashes()
    if hashes:
        out["plugins"] = hashes
    return out


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str | None]:
    return {
        "litmus": _version("litmus"),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "optuna": _version("optuna"),
        "torchjd": _version("torchjd"),
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "git_sha": git_sha(),
    }
