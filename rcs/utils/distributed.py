"""Distributed environment: torchrun or SLURM variables -> process group (gloo on CPU, nccl on GPU).

Single-process runs need nothing: :func:`init_distributed` returns a world of size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rcs.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def per_rank_batch(global_batch: int, world_size: int, key: str = "train.batch_size") -> int:
    """Images per rank and step when ``key`` = ``global_batch`` is split over ``world_size``
    ranks; a ConfigError naming the key and the fix when it does not divide evenly."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if global_batch % world_size:
        lo = max(world_size, global_batch // world_size * world_size)
        raise ConfigError(
            f"{key}={global_batch} is the global batch (all ranks together) and must be "
            f"divisible by the {world_size} DDP ranks; set it to a multiple of {world_size} "
            f"(e.g. --set {key}={lo} or {lo + world_size}) or use a number of ranks that "
            f"divides {global_batch}")
    return global_batch // world_size


PORT_RANGE = (20000, 60000)
"""MASTER_PORT is drawn from [20000, 60000) (submitit's range)."""


def master_port(job_id: str, restarts: int = 0) -> int:
    """The job's MASTER_PORT: ``$RCS_MASTER_PORT`` when set, else drawn from
    :data:`PORT_RANGE` by the job id and restart count, so every task of a job run derives the
    same port and a requeued run a fresh one."""
    fixed = os.environ.get("RCS_MASTER_PORT")
    if fixed:
        return int(fixed)
    import random

    return random.Random(f"{job_id}/{restarts}").randrange(*PORT_RANGE)


def _restarts() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def torch_env_vars(master_addr: str, rank: int, world_size: int, local_rank: int,
                   local_world_size: int, job_id: str) -> dict[str, str]:
    """The torch.distributed ``env://`` variables of one task of a SLURM job: MASTER_ADDR,
    MASTER_PORT (:func:`master_port` of the job id and ``$SLURM_RESTART_COUNT``), RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE. The one place rcs derives them (plain ``srun``
    tasks in :func:`detect_env`, submitit jobs in :func:`rcs.launch.job.export_distributed`).

    On a cluster that binds one GPU per task each task sees fewer devices than tasks per node:
    the local rank is then folded onto the visible devices."""
    try:
        n_dev = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError:  # pragma: no cover - a broken CUDA setup: no folding
        n_dev = 0
    if 0 < n_dev <= local_rank:
        local_rank %= n_dev
    return {"MASTER_ADDR": str(master_addr),
            "MASTER_PORT": str(master_port(str(job_id), _restarts())),
            "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(local_world_size)}


def _slurm_master() -> str:
    nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "")
    if not nodelist:
        return "127.0.0.1"
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()
        return out[0] if out else "127.0.0.1"
    except (OSError, subprocess.SubprocessError):
        return nodelist.split(",")[0].split("[")[0]


def slurm_env_vars() -> dict[str, str]:
    """:func:`torch_env_vars` of this ``srun`` task, from the SLURM variables (SLURM_PROCID,
    SLURM_NTASKS, SLURM_LOCALID, SLURM_NNODES, SLURM_JOB_ID, the first node of the step)."""
    world = int(os.environ.get("SLURM_NTASKS", "1"))
    nodes = max(1, int(os.environ.get("SLURM_NNODES", "1") or 1))
    return torch_env_vars(_slurm_master(), int(os.environ.get("SLURM_PROCID", 0)), world,
                          int(os.environ.get("SLURM_LOCALID", 0)), max(1, world // nodes),
                          os.environ.get("SLURM_JOB_ID", "0"))


def detect_env() -> DistEnv:
    """Rank/world from torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or SLURM (SLURM_PROCID, ...;
    MASTER_ADDR / MASTER_PORT are set from :func:`slurm_env_vars` unless already set)."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return DistEnv(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                       int(os.environ["WORLD_SIZE"]))
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        v = slurm_env_vars()
        os.environ.setdefault("MASTER_ADDR", v["MASTER_ADDR"])
        os.environ.setdefault("MASTER_PORT", v["MASTER_PORT"])
        return DistEnv(int(v["RANK"]), int(v["LOCAL_RANK"]), int(v["WORLD_SIZE"]))
    return DistEnv()


def init_distributed(device_type: str) -> DistEnv:
    """Initialise the default process group when the environment says world_size > 1."""
    env = detect_env()
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    return env


def barrier(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.barrier()


def broadcast_indices(indices: torch.Tensor | None, env: DistEnv,
                      device: torch.device) -> torch.Tensor:
    """Send rank 0's int64 index tensor to every rank (tensors only: nothing is pickled)."""
    if not env.enabled:
        assert indices is not None
        return indices
    n = torch.tensor([0 if indices is None else len(indices)], dtype=torch.int64, device=device)
    dist.broadcast(n, src=0)
    buf = indices.to(device) if env.is_main and indices is not None else torch.empty(
        int(n.item()), dtype=torch.int64, device=device)
    dist.broadcast(buf, src=0)
    return buf.cpu()


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into every rank's ``module``.

    DDP broadcasts buffers only at the start of its own forward; code that runs the raw module
    in eval mode (PGD attacks, selection) would otherwise see each rank's locally updated
    statistics, which a resume from rank 0's checkpoint cannot reproduce. One collective per
    dtype (the buffers are flattened together).
    """
    if not env.enabled or not dist.is_initialized():
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for b in module.buffers():
        groups.setdefault((b.dtype, b.device), []).append(b)
    with torch.no_grad():
        for bufs in groups.values():
            flat = _flatten_dense_tensors([b.detach() for b in bufs])
            dist.broadcast(flat, src=0)
            if env.is_main:
                continue
            for b, v in zip(bufs, _unflatten_dense_tensors(flat, bufs)):
                b.copy_(v)


def all_reduce_mean(value: float, env: DistEnv, device: torch.device) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def cleanup(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over ranks and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over ranks (rank order), differentiably; identity without DDP.

    Contrastive losses use it so the negatives are the whole global batch (as with the
    published DataParallel code), not one rank's share. Every rank then computes the same loss;
    the backward sums the ranks' identical gradients, and DDP's averaging divides by the world
    size again, so the parameter gradient equals the single-process gradient of the global
    batch. Batches must have the same size on every rank (``index_batches`` guarantees it).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
