"""IFM (Robinson et al., NeurIPS 2021): implicit feature modification of the contrastive loss.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the loss of ``rcs.losses.ifm``::

    L = (NTX(z) + α NTX_ε(z)) / (1 + α)          (ε = train.ifm_epsilon, α = train.ifm_alpha)

NTX_ε lowers every positive cosine and raises every negative cosine by ε: the adversary acts
on the features, not the images (no attack). The published code applies it to MoCo-v2 (queue,
momentum encoder); here the negatives are the (global) batch, SimCLR-style.
"""

from __future__ import annotations

import torch

from rcs.losses import ifm_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


@register_method("ifm")
class IFM(CleanPairs):
    name = "ifm"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        return ifm_loss(gather_batch(outputs[0]), t.temperature, t.ifm_epsilon, t.ifm_alpha)
