"""The one exception type of the analysis package."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Bad input to the analysis (empty store, missing baseline, corrupted file, ...).

    The message is one line; the CLI prints it as ``litmus: error: <message>``
    and exits with code 2.
    """


class NothingCompleted(AnalysisError):
    """The store has trials but none completed: the report holds only their counts (the CLI exits 1, not 2)."""
