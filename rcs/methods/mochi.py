"""MoCHi (Kalantidis et al., NeurIPS 2020): mixing of contrastive hard negatives.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the loss of ``rcs.losses.mochi``: per anchor, the
N = ``train.mochi_hard`` hardest in-batch negatives (capped at 2B - 2 of the global batch) give
s = ``train.mochi_mix`` mixtures of two hard negatives and s' = ``train.mochi_query_mix``
mixtures of the anchor with a hard negative (β < 1/2), all without gradient, as extra
negatives. The mixing draw comes from the step's generator (reproducible, exact on resume).
The published method mixes negatives from MoCo's queue; here they come from the batch.
"""

from __future__ import annotations

import torch

from rcs.losses import MochiDraw, mochi_draw, mochi_hard_count, mochi_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


def _world_size() -> int:
    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


@register_method("mochi")
class MoCHi(CleanPairs):
    name = "mochi"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.draw: MochiDraw | None = None

    def before_loss(self, batch: int, generator: torch.Generator) -> None:
        t = self.cfg.train
        rows = 2 * batch * _world_size()
        self.draw = mochi_draw(rows, mochi_hard_count(rows, t.mochi_hard), t.mochi_mix,
                               t.mochi_query_mix, generator=generator, device=generator.device)

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if self.draw is None:
            raise RuntimeError("MoCHi.embedding_loss needs the step's draw (before_loss) first")
        z = gather_batch(outputs[0])
        return mochi_loss(z, self.draw, self.cfg.train.temperature, self.cfg.train.mochi_hard)
