"""Launching rcs jobs on SLURM through submitit (PUBLISHED_METHODS.md D4.7).

- settings from ``slurm.*`` config keys, profiles in ``slurm/profiles/`` and flags
  (:mod:`rcs.launch.settings`);
- inside a job: the torch.distributed environment from submitit's, and :class:`CallJob`
  (:mod:`rcs.launch.job`);
- sweeps as job arrays (:mod:`rcs.launch.sweep`) and their collection into one table
  (:mod:`rcs.launch.collect`, ``rcs submit collect DIR``);
- :func:`submit_array` runs ``fn(*args)`` per argument tuple as one array (``rcs compare``).

``rcs submit ...`` / ``rcs <command> --slurm`` and the job that runs ``rcs <argv>`` are the CLI
layer's (:mod:`rcs.cli.slurm_options`, :mod:`rcs.cli.slurm_job`).

Names are imported lazily, so that the CLI does not load submitit unless it submits.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "CallJob": "rcs.launch.job",
    "JobFailedError": "rcs.errors", "LaunchError": "rcs.errors",
    "load_profile": "rcs.launch.settings", "make_executor": "rcs.launch.settings",
    "resolve_slurm": "rcs.launch.settings", "describe": "rcs.launch.submit",
    "submit_array": "rcs.launch.submit", "submit_jobs": "rcs.launch.submit",
    "wait_for": "rcs.launch.submit", "collect": "rcs.launch.collect",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'rcs.launch' has no attribute {name!r}")
