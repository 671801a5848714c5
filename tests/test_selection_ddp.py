"""RCS with gradients sharded over a real 2-process gloo group equals the single-process run."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rcs.config.schema import ModelConfig
from rcs.data import ImageDataset, train_val_split
from rcs.models import build_model
from rcs.selection import RCSSelector, SelectionContext

SETTINGS = {"candidate_batch": 8, "sketch_dim": 32, "rounds": 3}


def _problem():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=16))
    rng = np.random.default_rng(0)
    ds = ImageDataset(rng.integers(0, 256, (44, 16, 16, 3), dtype=np.uint8))
    cand, val = train_val_split(44, 0.1, 0)
    return model, SelectionContext(ds, cand, val, 0.25, seed=4, model=model, device="cpu")


def _worker(rank: int, world: int, init_file: str, work: str, out: dict) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        _, ctx = _problem()
        for store in ("memory", "disk"):
            cs = RCSSelector(None, distributed=True, work_dir=work, store=store,
                             **SETTINGS).select(ctx)
            out[(rank, store)] = (cs.indices.tolist(), cs.meta["world_size"])
    finally:
        dist.destroy_process_group()


def test_sharded_selection_equals_single_process(tmp_path):
    _, ctx = _problem()
    ref = {store: RCSSelector(None, store=store, **SETTINGS).select(ctx).indices.tolist()
           for store in ("memory", "disk")}
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "work"), out), nprocs=2,
             join=True)
    for rank in (0, 1):
        for store in ("memory", "disk"):
            idx, world = out[(rank, store)]
            assert world == 2 and idx == ref[store]
    assert not any((tmp_path / "work").rglob("*.rows"))  # shards removed afterwards
