"""``rcs <argv>`` as a SLURM job: distributed setup, the rcs command, checkpoint-and-requeue.

:class:`RcsJob` is the callable that submitit pickles. Each of the job's tasks (one per GPU, or
the CPU tasks asked for) calls it. It

1. exports the torch.distributed variables from submitit's job environment (``MASTER_ADDR`` =
   the first node of the job, ``MASTER_PORT`` derived from the job id and restart count,
   ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), so the trainer's usual
   ``env://`` initialisation builds the multi-node DDP group (nccl on GPUs, gloo on CPUs);
2. runs the command in-process: ``train`` through :class:`rcs.train.trainer.Trainer` (rank 0
   writes checkpoints, coresets and metrics; the others wait at the trainer's barriers), the
   other commands through their CLI entry point;
3. on preemption or time-out, SLURM (``--signal=USR2@signal_delay_s``) or submitit's
   ``job._interrupt()`` signal the tasks. The trainer stops every rank at the same step
   boundary and rank 0 writes the checkpoint; then rank 0 hands over to submitit's handler,
   which calls :meth:`RcsJob.checkpoint` (a fresh job that resumes from that checkpoint: same
   schedule, coreset and RNG streams), saves it as the job's submission, runs
   ``scontrol requeue`` and exits. A job stopped by SIGTERM alone (``scancel``, or a
   preemption that SLURM requeues itself) exits after the checkpoint without a result.

The return value of rank 0 is the run's summary (what ``summary.json`` holds, plus the job id).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from rcs.launch.job import export_distributed, log

WAIT_FOR_USR_S = 10.0
"""After a SIGTERM-only stop, how long to wait for submitit's signal (its preemption sends
SIGTERM, then the signal) before concluding that the job is being cancelled."""
WAIT_FOR_REQUEUE_S = 60.0
"""How long ranks other than 0 wait to be killed by rank 0's requeue before exiting."""


def usr_signal() -> signal.Signals:
    """submitit's preemption / time-out signal (SIGUSR2 unless $SUBMITIT_PREEMPT_SIGNAL)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    sig = getattr(signal, "SIG" + name, None)
    if sig is None:
        raise ValueError(f"unknown signal SIG{name} in $SUBMITIT_PREEMPT_SIGNAL")
    return sig


class RcsJob(submitit.helpers.Checkpointable):
    """``rcs <argv>`` as a checkpointable submitit callable (see the module docstring).

    ``restarts`` counts how many times this job was requeued by its own checkpoint; a requeued
    ``train`` always resumes from the run's ``checkpoint.pt`` when it exists.
    """

    def __init__(self, argv: list[str], restarts: int = 0):
        self.argv = [str(a) for a in argv]
        self.restarts = int(restarts)

    def __repr__(self) -> str:
        return f"RcsJob(rcs {' '.join(self.argv)}, restarts={self.restarts})"

    # ------------------------------------------------------------------ submitit protocol
    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit (rank 0) on preemption / time-out, after the trainer has written
        its checkpoint: the resubmission is a fresh job that resumes from it."""
        return submitit.helpers.DelayedSubmission(type(self)(self.argv, self.restarts + 1))

    def __call__(self) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        dist_vars = export_distributed()
        rank, world = int(env.global_rank), int(env.num_tasks)
        requeued = self.restarts > 0 or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
        log(f"job {env.job_id} task {rank}/{world} on {socket.gethostname()} (restart "
            f"{os.environ.get('SLURM_RESTART_COUNT', self.restarts)}): rcs {' '.join(self.argv)}")
        if dist_vars:
            log("distributed: " + " ".join(f"{k}={v}" for k, v in dist_vars.items()))
        from rcs.cli.parser import build_parser

        args = build_parser().parse_args(self.argv)
        if args.command == "train":
            return self._train(args, env, rank, requeued)
        status = int(args._run(args) or 0)
        if status:
            raise RuntimeError(f"rcs {args.command} exited with status {status} (see the log)")
        return {"command": args.command, "job_id": env.job_id, "status": status}

    # ------------------------------------------------------------------ train
    def _train(self, args: Any, env: Any, rank: int, requeued: bool) -> dict[str, Any]:
        from rcs.cli.train import train_config
        from rcs.train.trainer import Trainer
        from rcs.utils.signals import StopFlag, TrainingInterrupted

        cfg = train_config(args)  # as `rcs train` applies its flags
        resume = args.resume
        if requeued and (resume == "none" or (Path(cfg.out_dir) / "checkpoint.pt").exists()):
            resume = "auto"  # a requeued run continues from its own checkpoint
        usr = usr_signal()
        flag = StopFlag((signal.SIGTERM, signal.SIGUSR1, usr))
        trainer = Trainer(cfg, resume=resume, stop=flag)
        try:
            summary = trainer.fit(until_epoch=getattr(args, "until_epoch", None))
        except TrainingInterrupted as e:
            log(f"rank {rank}: {e}")
            self._after_interrupt(flag, usr, rank)
            raise  # not reached when the job is requeued (submitit exits the process)
        if rank != 0:
            return {"rank": rank, "job_id": env.job_id}
        summary = dict(summary)
        summary.update(job_id=env.job_id, restarts=self.restarts, out_dir=str(cfg.out_dir))
        return summary

    def _after_interrupt(self, flag: Any, usr: signal.Signals, rank: int) -> None:
        """The checkpoint is written: requeue (rank 0, submitit's signal) or exit quietly."""
        got = set(flag.received)
        if usr not in got:  # SIGTERM first: submitit's preemption sends its signal right after
            box: list[int] = []
            old = signal.signal(usr, lambda s, f: box.append(s))
            deadline = time.monotonic() + WAIT_FOR_USR_S
            while not box and time.monotonic() < deadline:
                time.sleep(0.2)
            signal.signal(usr, old)
            got.update(box)
        if usr in got and rank == 0:
            handler = signal.getsignal(usr)  # submitit's, restored when fit() returned
            signal.signal(usr, signal.SIG_IGN)  # one requeue only
            if callable(handler):
                log("checkpoint written; handing over to submitit to requeue the job")
                handler(usr, None)  # checkpoint() -> resubmission -> scontrol requeue -> exit
            raise RuntimeError("preempted, but submitit's signal handler is not installed "
                               "(is this running inside a submitit job?)")
        if usr in got:  # another rank: rank 0 requeues the job, which kills this process
            deadline = time.monotonic() + WAIT_FOR_REQUEUE_S
            while time.monotonic() < deadline:
                time.sleep(0.5)
        log(f"rank {rank}: stopped by signal(s) {sorted(int(s) for s in got)} after writing "
            "the checkpoint; exiting without a result")
        sys.stdout.flush()
        raise SystemExit(128 + int(flag.signum or signal.SIGTERM))
