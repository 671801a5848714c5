"""Launching rcs jobs on SLURM through submitit (DESIGN.md §4.7).

- ``rcs submit <train|select|finetune|eval> ...`` / ``rcs <command> --slurm ...``
  (:mod:`rcs.launch.cli`); settings from ``slurm.*`` config keys, profiles in
  ``slurm/profiles/`` and flags (:mod:`rcs.launch.settings`);
- inside the job: distributed setup from submitit's environment, the command, checkpoint and
  requeue on preemption / time-out (:mod:`rcs.launch.job`);
- sweeps as job arrays (:mod:`rcs.launch.sweep`) and their collection into one table
  (:mod:`rcs.launch.collect`, ``rcs submit collect DIR``);
- :func:`submit_array` runs ``fn(*args)`` per argument tuple as one array (``rcs compare``).

Names are imported lazily, so that the CLI does not load submitit unless it submits.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "CallJob": "rcs.launch.job", "RcsJob": "rcs.launch.job",
    "JobFailedError": "rcs.launch.errors", "LaunchError": "rcs.launch.errors",
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
