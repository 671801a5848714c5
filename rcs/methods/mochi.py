"""MoCHi (Kalantidis et al., NeurIPS 2020): mixing of contrastive hard negatives.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the loss of ``rcs.losses.mochi``: per anchor, the
N = ``train.mochi.hard`` hardest in-batch negatives (capped at 2B - 2 of the global batch) give
s = ``train.mochi.mix`` mixtures of two hard negatives and s' = ``train.mochi.query_mix``
mixtures of the anchor with a hard negative (β < 1/2), all without gradient, as extra
negatives. The mixing draw comes from the step's generator (reproducible, exact on resume).
The published method mixes negatives from MoCo's queue; here they come from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.config.checks import check
from rcs.losses import MochiDraw, mochi_draw, mochi_hard_count, mochi_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


def _world_size() -> int:
    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


@dataclass
class MochiSettings:
    """``train.mochi``: how many hard negatives MoCHi mixes."""

    hard: int = 1024
    """N, the hardest negatives per anchor that are mixed (capped at the 2B - 2 negatives of
    the batch)."""
    mix: int = 1024
    """s, synthetic negatives per anchor mixed from two hard negatives."""
    query_mix: int = 256
    """s', synthetic negatives per anchor mixed from the anchor and a hard negative."""

    def validate(self) -> None:
        check(self.hard >= 2 and self.mix >= 0 and self.query_mix >= 0,
              "train.mochi.hard must be >= 2, train.mochi.mix and train.mochi.query_mix >= 0")


@register_method("mochi", settings=MochiSettings)
class MoCHi(CleanPairs):
    name = "mochi"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.draw: MochiDraw | None = None

    def before_loss(self, batch: int, generator: torch.Generator) -> None:
        t = self.cfg.train
        rows = 2 * batch * _world_size()
        self.draw = mochi_draw(rows, mochi_hard_count(rows, t.mochi.hard), t.mochi.mix,
                               t.mochi.query_mix, generator=generator, device=generator.device)

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if self.draw is None:
            raise RuntimeError("MoCHi.embedding_loss needs the step's draw (before_loss) first")
        z = gather_batch(outputs[0])
        return mochi_loss(z, self.draw, self.cfg.train.temperature, self.cfg.train.mochi.hard)
