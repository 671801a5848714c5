"""HCL (Robinson et al., ICLR 2021): contrastive learning with hard negative samples.

Two clean augmented views per image (interleaved), one train-mode forward through the single
BN branch (``model.bn_names: [normal]``), and the debiased hard-negative loss of
``rcs.losses.hcl`` with concentration β (``train.hcl.beta``) and class prior τ⁺
(``train.hcl.tau_plus``); the negatives are the other 2B - 2 rows of the (global) batch, as in
the published SimCLR-based code. No input attack: the hard negatives are the adversary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.config.checks import check
from rcs.losses import hcl_loss
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


@dataclass
class HclSettings:
    """``train.hcl``: HCL's hard-negative weighting."""

    beta: float = 1.0
    """Concentration β of the hard-negative importance weights exp(β s / t)."""
    tau_plus: float = 0.1
    """Class prior τ⁺ of the debiasing term (0 = no debiasing)."""

    def validate(self) -> None:
        check(self.beta >= 0, "train.hcl.beta must be >= 0")
        check(0.0 <= self.tau_plus < 1.0, "train.hcl.tau_plus must be in [0, 1)")


@register_method("hcl", settings=HclSettings)
class HCL(CleanPairs):
    name = "hcl"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        return hcl_loss(gather_batch(outputs[0]), t.temperature, t.hcl.tau_plus, t.hcl.beta)
