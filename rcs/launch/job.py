"""Generic SLURM jobs: the torch.distributed environment of a submitit job and a checkpointable
``fn(*args)`` callable (:class:`CallJob`, used by ``rcs compare`` arrays).

``rcs <command>`` as a job (:class:`rcs.cli.slurm_job.RcsJob`) lives in the CLI layer, since it
parses the command line; it uses :func:`export_distributed` from here.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import submitit

from rcs.utils.distributed import master_port, torch_env_vars

__all__ = ["CallJob", "export_distributed", "log", "master_port"]


def export_distributed() -> dict[str, str]:
    """Set the torch.distributed variables of this submitit task (MASTER_ADDR/PORT, RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) and return them; one task: nothing (and any
    stale RANK / WORLD_SIZE / LOCAL_* are removed).

    The task layout (first node, global and local rank, tasks per node) comes from submitit's
    :class:`submitit.helpers.TorchDistributedEnvironment`; the values are made by
    :func:`rcs.utils.distributed.torch_env_vars`, the one derivation rcs has. Not used from
    submitit: its port (no restart count, so a requeued run would reuse the port of the run
    before) and its ``export()`` (it rewrites CUDA_VISIBLE_DEVICES, which breaks clusters that
    bind one GPU per task, and refuses variables that are already set)."""
    tde = submitit.helpers.TorchDistributedEnvironment()
    if int(tde.world_size) <= 1:
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            os.environ.pop(k, None)
        return {}
    values = torch_env_vars(tde.master_addr, tde.rank, tde.world_size, tde.local_rank,
                            max(1, int(tde.local_world_size)),
                            submitit.JobEnvironment().job_id)
    os.environ.update(values)
    return values


def log(msg: str) -> None:
    print(f"[rcs job {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class CallJob(submitit.helpers.Checkpointable):
    """``fn(*args)`` as a checkpointable job: a preempted or timed-out run is requeued and calls
    ``fn`` again with the same arguments (``fn`` is expected to resume, as `rcs train` does)."""

    def __init__(self, fn: Any, args: tuple = ()):
        self.fn = fn
        self.args = tuple(args)

    def __call__(self) -> Any:
        env = submitit.JobEnvironment()
        log(f"job {env.job_id} on {socket.gethostname()}: "
            f"{getattr(self.fn, '__qualname__', self.fn)}")
        return self.fn(*self.args)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(type(self)(self.fn, self.args))

