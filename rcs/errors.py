"""Exceptions raised for bad user input. Each message names the problem and how to fix it."""

from __future__ import annotations


class RCSError(Exception):
    """Base of every error rcs raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(RCSError, ValueError):
    """A config value, key or override is invalid."""


class DataError(RCSError):
    """A dataset is missing, incomplete, corrupt or does not match what was expected."""


class CheckpointError(RCSError):
    """A checkpoint is corrupt, foreign, or does not fit the model it is loaded into."""


class CoresetError(RCSError):
    """A coreset file is invalid or belongs to another dataset."""


class NotAvailableError(RCSError):
    """A feature exists in the interface but its engine is not installed or not built yet."""


class NonFiniteLossError(RCSError):
    """Training produced a NaN/Inf loss."""


class StorageError(RCSError):
    """A file could not be written: disk full, quota, read-only or forbidden folder."""


class RunFolderError(RCSError):
    """A run folder holds another run, or another process is writing it."""


class LaunchError(RCSError):
    """A SLURM job could not be submitted (no SLURM here, sbatch refused it, bad settings)."""


class JobFailedError(LaunchError):
    """A submitted SLURM job raised, was cancelled, or ended without a result."""

    def __init__(self, message: str, job_id: str = "", state: str = ""):
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class RCSWarning(UserWarning):
    """A legal but suspicious value (the CLI prints these as one ``warning:`` line)."""


def warn(message: str) -> None:
    """Emit an :class:`RCSWarning` (shown by the CLI on stderr; ``pytest.warns`` sees it)."""
    import warnings

    warnings.warn(message, RCSWarning, stacklevel=2)
