"""Errors of the SLURM launcher (printed by the CLI as one line, like every ``RCSError``)."""

from __future__ import annotations

from rcs.errors import RCSError


class LaunchError(RCSError):
    """A job could not be submitted (no SLURM here, sbatch refused it, bad settings)."""


class JobFailedError(LaunchError):
    """A submitted job raised, was cancelled, or ended without a result."""

    def __init__(self, message: str, job_id: str = "", state: str = ""):
        super().__init__(message)
        self.job_id = job_id
        self.state = state
