"""Index batches for an epoch: deterministic shuffle, sharding across ranks, batching.

``index_batches`` replaces a DataLoader + DistributedSampler for in-memory / memory-mapped data:

1. ``order`` = ``indices`` permuted by ``numpy.random.default_rng([seed, epoch])`` (or kept as is
   when ``shuffle=False``); every rank computes the same ``order``.
2. Sharding, as ``torch.utils.data.DistributedSampler`` does it: without ``drop_last`` the order
   is padded to a multiple of ``world_size`` by wrapping around to its start (repeating it as
   often as needed), so a few samples are seen twice per epoch; with ``drop_last`` it is cut to a
   multiple of ``world_size``. Rank ``r`` takes ``order[r::world_size]``.
3. Each rank's share is split into batches of ``batch_size`` (a per-rank size); with
   ``drop_last`` an incomplete last batch is dropped.

So every rank gets the same number of batches (a requirement of DDP's collective calls), and
the union over ranks is ``indices`` (plus the padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rcs.utils.seed import generator


def shuffled(indices: np.ndarray | Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """``indices`` in the epoch's order: a permutation from ``default_rng([seed, epoch])``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    rng = generator(int(seed) % 2**63, int(epoch) % 2**63)
    return idx[rng.permutation(len(idx))]


def shard(order: np.ndarray, rank: int = 0, world_size: int = 1, drop_last: bool = False
          ) -> np.ndarray:
    """Rank ``rank``'s share of ``order`` (padding by wrap-around or cutting, see module doc)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    n = len(order)
    if world_size == 1 or n == 0:
        return order.copy()
    if drop_last:
        order = order[: (n // world_size) * world_size]
    else:
        total = -(-n // world_size) * world_size
        if total > n:
            order = np.resize(order, total)  # np.resize repeats the array cyclically
    return order[rank::world_size].copy()


def index_batches(indices: np.ndarray | Sequence[int], batch_size: int, shuffle: bool,
                  seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                  drop_last: bool = False) -> list[np.ndarray]:
    """This rank's int64 index batches for ``epoch``; deterministic in ``(seed, epoch)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    order = shuffled(idx, seed, epoch) if shuffle else idx
    mine = shard(order, rank, world_size, drop_last)
    stop = (len(mine) // batch_size) * batch_size if drop_last else len(mine)
    return [mine[s:min(s + batch_size, stop)] for s in range(0, stop, batch_size)]
