"""RUSH (Pang et al., 2022, "Robust Contrastive Learning Using Randomized Smoothing"): standard
contrastive pretraining, robustness from randomized smoothing at test time.

Pretraining is plain SimCLR: NT-Xent of two clean augmented views (interleaved) through the
single BN branch (``model.bn_names: [normal]``), no attack. Robustness comes afterwards:
fine-tune the linear head on Gaussian-noise-augmented images (``finetune.noise_sigma = σ``) and
certify the smoothed classifier with ``rcs eval --attacks smoothing`` (Cohen et al.'s
CERTIFY at ``eval.smoothing_sigma = σ``; ``rcs.evaluate.smoothing``).
"""

from __future__ import annotations

import torch

from rcs.losses import nt_xent
from rcs.methods.base import register_method
from rcs.methods.clean_pairs import CleanPairs
from rcs.utils.distributed import gather_batch


@register_method("rush")
class RUSH(CleanPairs):
    name = "rush"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return nt_xent(gather_batch(outputs[0]), self.cfg.train.temperature)
