"""The trainer's coreset phase: when a coreset is used and selected, the selection itself (or a
given ``rcs select`` coreset file, checked against the run) (:class:`CoresetPhase`, a part of
:class:`rcs.train.trainer.Trainer`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rcs.selection.base import Coreset, SelectionContext, budget
from rcs.utils.distributed import broadcast_buffers, broadcast_indices
from rcs.utils.metrics import coreset_fields


class CoresetPhase:
    """Selection methods of :class:`rcs.train.trainer.Trainer` (uses its ``cfg``, ``env``,
    ``dataset``, ``candidates``, ``val``, ``selector``, ``model``, ``progress``, ``logger``;
    sets ``coreset``)."""

    def uses_coreset(self, epoch: int) -> bool:
        return self.cfg.selection.method != "full" and not self.reselect.is_warmup(epoch)

    def selects_at(self, epoch: int) -> bool:
        return self.cfg.selection.method != "full" and self.reselect.should_select(epoch)

    def coreset_file(self, path: str | Path) -> Coreset:
        """The coreset in ``path`` (``rcs select``'s .npz), checked against this run: same
        dataset (length and fingerprint), no validation image (the rest are candidates), the
        budget."""
        from rcs.errors import CoresetError

        cs = Coreset.load(path, dataset_len=len(self.dataset),
                          fingerprint=self.dataset.fingerprint())
        inval = np.intersect1d(cs.indices, self.val)
        if len(inval):
            raise CoresetError(
                f"coreset '{path}' holds {len(inval)} of this run's validation images: it was "
                "selected with another validation split (data.val_fraction or seed differ); "
                "select again with this run's config")
        want = budget(self.cfg.selection.fraction, len(self.candidates))
        if len(cs) != want:
            raise CoresetError(f"coreset '{path}' has {len(cs)} images but this run's "
                               f"selection.fraction={self.cfg.selection.fraction} needs {want}; "
                               "set the same fraction as the selection")
        cs.meta["file"] = str(path)
        return cs

    def select(self, epoch: int) -> None:
        t0 = time.perf_counter()
        coreset = None
        broadcast_buffers(self.model, self.env)  # every rank selects with rank 0's model
        given = self.cfg.selection.coreset and self.progress.selections == 0
        if given and self.env.is_main:
            coreset = self.coreset_file(self.cfg.selection.coreset)
        elif not given and (self.env.is_main or self.sharded_selection):
            ctx = SelectionContext(
                dataset=self.dataset, candidates=self.candidates, val=self.val,
                fraction=self.cfg.selection.fraction, seed=self.cfg.seed + self.cfg.selection.seed,
                model=self.model, augment=self.augment, device=self.device, cfg=self.cfg,
                epoch=epoch)
            coreset = self.selector.select(ctx)
        if coreset is not None and self.env.is_main:
            coreset.save(self.out / "coresets" / f"epoch_{epoch:04d}.npz")
        idx = broadcast_indices(torch.from_numpy(coreset.indices) if coreset else None,
                                self.env, self.device)
        self.coreset = coreset if coreset is not None else Coreset(idx.numpy())
        self.model.train()
        seconds = time.perf_counter() - t0
        self.progress.selections += 1
        self.progress.select_seconds += seconds
        self.progress.selected_epoch = epoch
        self.logger.log(event="selection", epoch=epoch, method=self.selector.name,
                        size=len(self.coreset), seconds=seconds,
                        augment_strength=self.augment.strength,
                        timings=self.coreset.meta.get("timings", {}),
                        **coreset_fields(self.coreset, self.dataset))
