"""IFM (Robinson et al., NeurIPS 2021): implicit feature modification of the contrastive loss.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the loss of ``rcs.losses.ifm``::

    L = (NTX(z) + α NTX_ε(z)) / (1 + α)          (ε = train.ifm.epsilon, α = train.ifm.alpha)

NTX_ε lowers every positive cosine and raises every negative cosine by ε: the adversary acts
on the features, not the images (no attack). The published code applies it to MoCo-v2 (queue,
momentum encoder); here the negatives are the (global) batch, SimCLR-style.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.config.checks import check
from rcs.losses import ifm_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


@dataclass
class IfmSettings:
    """``train.ifm``: IFM's perturbation budget and loss weight."""

    epsilon: float = 0.1
    """Budget ε: positive cosines lowered and negative cosines raised by ε (published
    0.05 / 0.1 / 0.2 on ImageNet-100; 0.1 best)."""
    alpha: float = 1.0
    """L = (NTX + α NTX_ε) / (1 + α)."""

    def validate(self) -> None:
        check(self.epsilon >= 0 and self.alpha >= 0,
              "train.ifm.epsilon and train.ifm.alpha must be >= 0")


@register_method("ifm", settings=IfmSettings)
class IFM(CleanPairs):
    name = "ifm"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        return ifm_loss(gather_batch(outputs[0]), t.temperature, t.ifm.epsilon, t.ifm.alpha)
