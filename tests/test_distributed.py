"""Cross-rank pieces on a real 2-process gloo group: gathered contrastive loss and broadcasts."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rcs.losses import nt_xent
from rcs.utils.distributed import DistEnv, broadcast_indices, gather_batch


def _worker(rank: int, world: int, init_file: str, out: dict) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    x = torch.randn(8, 5, dtype=torch.float64)
    w_ref = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    loss_ref = nt_xent(x @ w_ref)
    (g_ref,) = torch.autograd.grad(loss_ref, w_ref)
    # each rank holds 2 of the 4 pairs; gradients are averaged as DDP does
    w = w_ref.detach().clone().requires_grad_(True)
    loss = nt_xent(gather_batch(x[4 * rank:4 * rank + 4] @ w))
    loss.backward()
    g = w.grad.clone()
    dist.all_reduce(g)
    g /= world
    env = DistEnv(rank=rank, world_size=world)
    idx = broadcast_indices(torch.tensor([3, 1, 4, 1, 5]) if rank == 0 else None, env,
                            torch.device("cpu"))
    out[rank] = (float(loss.detach()), float(loss_ref.detach()),
                 float((g - g_ref).abs().max()), idx.tolist())
    dist.destroy_process_group()


def test_gathered_nt_xent_equals_single_process_loss_and_gradient(tmp_path):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    for rank in (0, 1):
        loss, loss_ref, gdiff, idx = out[rank]
        assert abs(loss - loss_ref) < 1e-12
        assert gdiff < 1e-12
        assert idx == [3, 1, 4, 1, 5]
