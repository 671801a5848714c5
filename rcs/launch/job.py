"""Generic SLURM jobs: the torch.distributed environment of a submitit job and a checkpointable
``fn(*args)`` callable (:class:`CallJob`, used by ``rcs compare`` arrays).

``rcs <command>`` as a job (:class:`rcs.cli.slurm_job.RcsJob`) lives in the CLI layer, since it
parses the command line; it uses :func:`export_distributed` from here.
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import Any

import submitit


def master_port(job_id: str, restarts: int) -> int:
    """A port in [20000, 60000) that every task of a job run derives alike (none is shared)."""
    return random.Random(f"{job_id}/{restarts}").randrange(20000, 60000)


def export_distributed(env: Any) -> dict[str, str]:
    """Set MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE from submitit's
    ``JobEnvironment`` (multi-node: the master is the job's first node). One task: nothing."""
    world = int(env.num_tasks)
    if world <= 1:
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            os.environ.pop(k, None)
        return {}
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    local_world = max(1, world // max(1, int(env.num_nodes)))
    local_rank = int(env.local_rank)
    try:  # a cluster that binds one GPU per task shows each task a single device
        import torch

        n_dev = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if 0 < n_dev <= local_rank:
            local_rank %= n_dev
    except ImportError:  # pragma: no cover
        pass
    values = {
        "MASTER_ADDR": str(env.hostnames[0]),
        "MASTER_PORT": os.environ.get("RCS_MASTER_PORT") or str(master_port(env.job_id,
                                                                            restarts)),
        "RANK": str(env.global_rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(local_world),
    }
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

