"""The exceptions of litmus: one base, one module (the shape of optuna.exceptions).

:class:`LitmusError` is what litmus raises on purpose: bad input (a spec, a
config, a data file, a store, a plugin) or a study that cannot go on. The
``litmus`` command prints its message as one line and exits with the class's
``exit_code`` (2 for bad input, 1 for a run that could not finish); any other
exception is a bug in litmus or in a plugin and is shown with its traceback
(exit 1). Input errors also derive from ``ValueError`` and run-time ones from
``RuntimeError``, so ``except ValueError`` and ``except RuntimeError`` keep working.

``trainables``, ``study`` and ``analysis`` all import this module; it imports
nothing from them.
"""

from __future__ import annotations


class LitmusError(Exception):
    """Base of every error litmus raises on purpose; its message is one line."""

    exit_code = 2


class InputError(LitmusError, ValueError):
    """Bad input, found before anything expensive starts (exit 2)."""


class RunError(LitmusError, RuntimeError):
    """A run that could not finish (exit 1); what finished is in the store and a rerun resumes."""

    exit_code = 1


# --- trainables --------------------------------------------------------------------------------
class ConfigError(InputError):
    """A training config, method, hyperparameter or architecture option that cannot work."""


class RegistryError(ConfigError):
    """A class that cannot be registered: no name, wrong base class, or a name already taken."""


class PluginError(InputError):
    """A plugin that cannot be loaded: missing, failing to import, or registering something invalid."""


class DataError(InputError):
    """A dataset's files are missing or not in the expected format (the message names the file and line)."""


class MethodError(LitmusError, ValueError):
    """A method that cannot handle the values it was given during training: the trial fails, loudly."""

    exit_code = 1


class CheckpointError(RunError):
    """A checkpoint that is not tensors and plain data, or does not fit the object it is loaded into."""


# --- study -------------------------------------------------------------------------------------
class SpecError(InputError):
    """A malformed or contradictory study spec (the message names the field path)."""


class StoreError(InputError):
    """The store path is unusable (not writable, not a store, corrupted file)."""


class LockError(StoreError):
    """Another driver runs on this store."""


class UnreachableError(InputError):
    """Some dataset's data or pretrained weights are not reachable."""


class ClusterError(InputError):
    """The Ray cluster is unreachable or cannot satisfy the spec's resources."""


class PluginNodeError(ClusterError):
    """A plugin module cannot be imported on a node of the Ray cluster."""


class StudyError(RunError):
    """The study cannot go on (for example, every EW reference trial failed)."""


class RayRunError(RunError):
    """Ray Tune stopped with an error it could not handle; the store is intact and a rerun resumes."""


class NoSpaceError(RunError):
    """The disk is full; the store is intact and a rerun resumes."""


class CLIError(InputError):
    """A command-line argument that cannot work."""


# --- analysis ----------------------------------------------------------------------------------
class AnalysisError(InputError):
    """Bad input to the analysis (empty store, missing baseline, corrupted file, ...)."""


class NothingCompleted(AnalysisError):
    """The store has trials but none completed: the report holds only their counts (exit 1, not 2)."""

    exit_code = 1


class Vanished(AnalysisError):
    """A file listed a moment ago is gone: the writer replaced or compacted it meanwhile (list again)."""


class DesignError(InputError):
    """A sequential design that cannot work; the message names the field and the smallest workable value."""


class StoreWarning(UserWarning):
    """Something in a store that litmus leaves out, named so that nothing is skipped without a word."""
