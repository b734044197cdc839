"""Data-root option handling shared by the on-disk datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def data_root(value: Any) -> Path:
    """The ``root`` option as a path: ``~`` and environment variables (``$LITMUS_DATA/nyuv2``) expanded."""
    return Path(os.path.expandvars(str(value))).expanduser()
