"""HCL (Robinson et al., ICLR 2021): contrastive learning with hard negative samples.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the debiased hard-negative loss of
``rcs.losses.hcl`` with concentration β (``train.hcl_beta``) and class prior τ⁺
(``train.hcl_tau_plus``); the negatives are the other 2B - 2 rows of the (global) batch, as in
the published SimCLR-based code. No input attack: the hard negatives are the adversary.
"""

from __future__ import annotations

import torch

from rcs.losses import hcl_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


@register_method("hcl")
class HCL(CleanPairs):
    name = "hcl"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        return hcl_loss(gather_batch(outputs[0]), t.temperature, t.hcl_tau_plus, t.hcl_beta)
