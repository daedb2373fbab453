"""Typed errors raised by the core.

Only the CLI turns these into messages and exit codes, so library users can catch them precisely
and the CLI can promise one clear line per mistake instead of a traceback.
"""

from __future__ import annotations


class VizkitError(Exception):
    """Base of every error vizkit raises on purpose; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(VizkitError):
    """The caller asked for something that cannot be valid (unknown name, bad option, bad range)."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A plugin, model kind, dataset, layer or option name that is not registered."""


class OptionError(UsageError):
    """An option value of the wrong type or outside its allowed range."""


class UnitError(UsageError):
    """A malformed ``--units`` spec or a unit index outside the layer."""


class CapabilityError(UsageError):
    """A probe needs a capability that the model does not declare."""


class DataError(UsageError):
    """A dataset that cannot be built from what the user pointed at."""


class OutputError(UsageError):
    """An output location that cannot be written."""


class CheckpointError(VizkitError):
    """A checkpoint file that cannot be read safely (not a checkpoint, truncated, unsafe, NaN)."""


class PluginError(VizkitError):
    """A plugin that failed to load or registered something invalid."""


class ProbeFailure(VizkitError):
    """A probe that started but could not finish (divergence, non-finite values)."""


class WriteError(VizkitError):
    """Writing a result failed at run time (disk full, permission lost); nothing half-written stays."""
