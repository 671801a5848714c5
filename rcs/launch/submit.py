"""Submitting callables to SLURM (or submitit's local executor) and waiting for them.

- :func:`submit_jobs`: one job, or a job array when several callables are given;
- :func:`job_info` / :func:`describe`: job id, per-rank log paths, how to follow and cancel;
- :func:`wait_for`: the job's result, or a :class:`JobFailedError` naming what happened (the
  remote traceback for a job that raised; the SLURM state for a cancelled or killed one);
- :func:`submit_array`: ``fn(*args)`` for each argument tuple as one array, results in order
  (used by ``rcs compare --slurm``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rcs.config.schema import SlurmConfig
from rcs.errors import JobFailedError, LaunchError
from rcs.launch.settings import make_executor


def job_folder(folder: str | Path) -> str:
    """The job folder pattern: ``%j`` (the job id) is appended when missing."""
    text = str(folder)
    if "%j" not in text:
        text = str(Path(text) / "%j")
    return str(Path(text).absolute())


def submit_jobs(callables: Sequence[Any], slurm: SlurmConfig, folder: str | Path,
                name: str) -> list[Any]:
    """Submit each callable as a job (several: one job array); returns submitit jobs."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    if not callables:
        raise LaunchError("nothing to submit")
    executor = make_executor(slurm, job_folder(folder), name)
    try:
        if len(callables) == 1:
            return [executor.submit(callables[0])]
        jobs = []
        with executor.batch():
            for c in callables:
                jobs.append(executor.submit(c))
        return jobs
    except (FailedJobError, FailedSubmissionError, OSError) as e:
        raise LaunchError(f"sbatch refused the job: {str(e).strip()[-1500:]}") from None


def _task_paths(job: Any) -> list[tuple[Path, Path]]:
    n = job.num_tasks
    return [(job.task(t).paths.stdout, job.task(t).paths.stderr) for t in range(n)]


def job_info(job: Any) -> dict[str, Any]:
    """Plain facts about a submitted job (for manifests and printing)."""
    paths = _task_paths(job)
    return {"job_id": str(job.job_id), "tasks": len(paths),
            "folder": str(paths[0][0].parent),
            "stdout": [str(o) for o, _ in paths], "stderr": [str(e) for _, e in paths]}


def describe(jobs: Sequence[Any], executor: str = "slurm") -> list[str]:
    """Human lines: job id(s), log paths, how to follow and cancel."""
    lines = []
    first = job_info(jobs[0])
    if len(jobs) == 1:
        lines.append(f"submitted job {first['job_id']} ({first['tasks']} task"
                     f"{'s' if first['tasks'] > 1 else ''})")
    else:
        array = str(jobs[0].job_id).split("_")[0]
        lines.append(f"submitted job array {array} ({len(jobs)} jobs: "
                     f"{jobs[0].job_id} .. {jobs[-1].job_id}, {first['tasks']} task(s) each)")
    lines.append(f"  job folder: {first['folder']}")
    lines.append(f"  logs (rank 0): {first['stdout'][0]}")
    lines.append(f"                 {first['stderr'][0]}")
    if first["tasks"] > 1:
        lines.append(f"  other ranks: {first['stdout'][0].replace('_0_log.', '_<rank>_log.')}")
    lines.append(f"  follow:  tail -f {first['stdout'][0]} {first['stderr'][0]}")
    if executor == "slurm":
        target = str(jobs[0].job_id).split("_")[0] if len(jobs) > 1 else first["job_id"]
        lines.append(f"  status:  squeue -j {target}   (sacct -j {target} when finished)")
        lines.append(f"  cancel:  scancel {target}")
    return lines


def _tail(text: str, n: int) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def wait_for(job: Any, label: str = "", poll_s: float = 1.0) -> list[Any]:
    """Wait for ``job`` and return its per-task results (rank order).

    Raises :class:`JobFailedError` with the remote error (a job that raised) or with the
    SLURM state and the end of the log (cancelled, killed, out of time, node failure).
    """
    from submitit.core.utils import FailedJobError, UncompletedJobError

    what = f"job {job.job_id}" + (f" ({label})" if label else "")
    while not job.done():
        time.sleep(poll_s)
    try:
        return list(job.results())
    except FailedJobError as e:
        text = str(e)
        trace = text.split("----------------------")
        body = trace[1] if len(trace) > 2 else text
        err = job_info(job)["stderr"][0]
        raise JobFailedError(f"{what} failed on the cluster:\n{_tail(body, 25)}\n"
                             f"(full log: {err})", str(job.job_id), "FAILED") from None
    except UncompletedJobError as e:
        state = _state(job)
        err = job_info(job)["stderr"][0]
        log = _tail(Path(err).read_text(errors="replace") if Path(err).exists() else "", 8)
        hint = ("it was cancelled" if state.startswith("CANCELLED") else
                "it ran out of time" if state.startswith("TIMEOUT") else
                "it was killed or its node failed")
        raise JobFailedError(
            f"{what} ended without a result (SLURM state {state}): {hint}. "
            + (f"Last lines of {err}:\n{log}" if log else f"(no log at {err}; {_tail(str(e), 3)})"),
            str(job.job_id), state) from None


def _state(job: Any) -> str:
    try:
        return str(job.watcher.get_state(job.job_id, mode="force"))
    except Exception:  # noqa: BLE001 - best effort, for the message only
        return "UNKNOWN"


def write_manifest(path: Path, record: dict[str, Any]) -> Path:
    from rcs.utils.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str))
    return path


def submit_array(fn: Callable[..., Any], arg_tuples: Sequence[tuple], slurm: SlurmConfig,
                 folder: str | Path, log: Callable[[str], None] = print,
                 name: str = "rcs-array") -> list[Any]:
    """Run ``fn(*args)`` for every tuple as one job array; wait and return the results in
    order. Each call runs as one task (``fn`` is not distributed); a preempted or timed-out
    task is requeued and calls ``fn`` again with the same arguments."""
    import dataclasses

    from rcs.utils.optional import require

    require("submitit", "running jobs on SLURM")
    from rcs.launch.job import CallJob

    one = dataclasses.replace(slurm, nodes=1, tasks_per_node=1,
                              gpus_per_node=min(1, slurm.gpus_per_node))
    jobs = submit_jobs([CallJob(fn, tuple(a)) for a in arg_tuples], one, folder, name)
    for line in describe(jobs, one.executor):
        log(line)
    return [wait_for(j, name)[0] for j in jobs]
