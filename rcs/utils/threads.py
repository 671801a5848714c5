"""CPU threads of an rcs process: ``--threads N``, else ``$RCS_THREADS``, else
``$OMP_NUM_THREADS``, else every core the process may use.

torch's default takes all physical cores in every process, so several rcs processes on one
machine (parallel runs, DDP ranks on CPU, a test suite beside a benchmark) oversubscribe the
cores and each slows down many times; give each process ``cores / processes`` threads.
"""

from __future__ import annotations

import os

from rcs.errors import ConfigError


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"${name}={raw!r} must be a whole number of threads (e.g. 2)") from None
    if value < 1:
        raise ConfigError(f"${name}={value} must be >= 1")
    return value


def resolve_threads(requested: int | None = None) -> tuple[int, str]:
    """``(threads, where the number came from)``."""
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads {requested} must be >= 1")
        return requested, "--threads"
    for name in ("RCS_THREADS", "OMP_NUM_THREADS"):
        value = _env_int(name)
        if value is not None:
            return value, f"${name}"
    return available_cores(), "all cores"


_STATE: dict[str, object] = {}


def configure_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads (and ``RCS_THREADS`` for child processes); returns them."""
    import torch

    n, source = resolve_threads(requested)
    torch.set_num_threads(n)
    os.environ["RCS_THREADS"] = str(n)
    _STATE.update(threads=n, source=source)
    return n


def threads_header() -> str:
    """One line for a run's header: the threads in use, of how many cores, and from where."""
    import torch

    n = torch.get_num_threads()
    source = _STATE.get("source", "torch default")
    cores = available_cores()
    over = "; more threads than cores slows every process down" if n > cores else ""
    return (f"threads: {n} of {cores} cores ({source}; set with --threads N or "
            f"RCS_THREADS{over})")
