"""The analysis package's exceptions: defined with all of litmus's in litmus/errors.py."""

from __future__ import annotations

from litmus.errors import AnalysisError, NothingCompleted  # noqa: F401
