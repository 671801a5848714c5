"""Feeding a coreset to a torch DataLoader, and deciding when to reselect.

:class:`CoresetSampler` yields the coreset's dataset indices, reshuffled every epoch from
``(seed, epoch)``, and sharded across DDP ranks exactly like
``rcs.data.index_batches``: the epoch's order is padded by wrap-around to a multiple of
``world_size`` (every rank gets ``ceil(k / world_size)`` indices, so at most ``world_size - 1``
indices are seen twice per epoch, as with ``DistributedSampler``), and rank r takes positions
``r, r + W, ...``; with ``drop_last`` the tail is cut instead (disjoint, up to ``W - 1`` unseen).

:class:`ReselectionSchedule` encodes the RCS schedule for foreign training loops, with 1-based
epochs as in rcs's trainer: full data for epochs ``1 .. warmup_epochs``, then a selection before
epoch ``warmup_epochs + 1`` and every ``every`` epochs after it::

    schedule = ReselectionSchedule(warmup_epochs=100, every=20)
    for epoch in range(1, epochs + 1):
        if schedule.should_select(epoch):
            sampler.set_coreset(selector.select(train_set, val_idx))
        loader = train_loader if schedule.is_warmup(epoch) else coreset_loader
        sampler.set_epoch(epoch)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from rcs.data.batches import shard, shuffled
from rcs.selection.base import Coreset


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    d = torch.distributed
    live = d.is_available() and d.is_initialized()
    r = rank if rank is not None else (d.get_rank() if live else 0)
    w = world_size if world_size is not None else (d.get_world_size() if live else 1)
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank={r} must be in [0, world_size={w})")
    return r, w


class CoresetSampler(Sampler[int]):
    """``DataLoader(dataset, sampler=CoresetSampler(coreset, shuffle=True))`` (see module doc)."""

    def __init__(self, coreset: Coreset | np.ndarray | Any, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False):
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0
        self._explicit_epoch = False
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.set_coreset(coreset)

    def set_coreset(self, coreset: Coreset | np.ndarray | Any) -> None:
        """Use a new coreset (after a reselection); takes effect at the next ``__iter__``."""
        idx = coreset.indices if isinstance(coreset, Coreset) else coreset
        self.indices = np.asarray(idx, dtype=np.int64).reshape(-1)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (as ``DistributedSampler``). Without any call, each new
        iteration (each epoch of a plain loop) takes the next epoch's order by itself."""
        self.epoch = int(epoch)
        self._explicit_epoch = True

    def _mine(self) -> np.ndarray:
        order = shuffled(self.indices, self.seed, self.epoch) if self.shuffle else self.indices
        return shard(order, self.rank, self.world_size, self.drop_last)

    def __iter__(self) -> Iterator[int]:
        mine = self._mine().tolist()
        if not self._explicit_epoch:  # a plain loop gets a fresh order every epoch
            self.epoch += 1
        return iter(mine)

    def __len__(self) -> int:
        n, w = len(self.indices), self.world_size
        if w == 1 or n == 0:
            return n
        return n // w if self.drop_last else -(-n // w)


class ReselectionSchedule:
    """When a training loop should select: ``should_select(epoch)``, ``is_warmup(epoch)``.

    Epochs are 1-based, as in the trainer and the published scripts: epochs
    ``1 .. warmup_epochs`` train on the full data; selections happen before epochs
    ``warmup_epochs + 1``, ``warmup_epochs + 1 + every``, ... (101, 121, ... for 100 / 20).
    """

    def __init__(self, warmup_epochs: int = 100, every: int = 20):
        if warmup_epochs < 0 or every < 0:
            raise ValueError(f"need warmup_epochs >= 0 and every >= 0 (0 = select once), got "
                             f"{warmup_epochs}, {every}")
        self.warmup_epochs, self.every = int(warmup_epochs), int(every)

    @classmethod
    def from_config(cls, cfg: Any) -> ReselectionSchedule:
        """From a SelectionConfig (or a RunConfig's ``selection``)."""
        sc = getattr(cfg, "selection", cfg)
        return cls(sc.warmup_epochs, sc.every)

    def is_warmup(self, epoch: int) -> bool:
        """True while training on the full data (``epoch <= warmup_epochs``)."""
        return epoch <= self.warmup_epochs

    def should_select(self, epoch: int) -> bool:
        """True at ``warmup_epochs + 1 + j * every`` (j >= 0): select before this epoch."""
        if self.every == 0:  # select once
            return epoch == self.warmup_epochs + 1
        return epoch > self.warmup_epochs and (epoch - self.warmup_epochs - 1) % self.every == 0

    def last_selection(self, epoch: int) -> int | None:
        """Epoch of the selection whose coreset is in use at ``epoch`` (None during warm-up);
        handy on resume to check the checkpoint holds the right coreset."""
        if self.is_warmup(epoch):
            return None
        if self.every == 0:
            return self.warmup_epochs + 1
        return self.warmup_epochs + 1 + (epoch - self.warmup_epochs - 1) // self.every * self.every

    def __repr__(self) -> str:
        return f"ReselectionSchedule(warmup_epochs={self.warmup_epochs}, every={self.every})"
