"""ARoCL: RoCL with A-InfoNCE (Yu et al., ECCV 2022, "Adversarial Contrastive Learning via
Asymmetric InfoNCE"; the published RoCL-IP / -HN / -IPHN).

Everything is RoCL's (``rcs.methods.rocl``: single BN, instance-wise PGD of ``t1`` against
``t2`` in eval mode, one train-mode forward of ``[t1; t2; adv]``, the 1/λ regulariser
NTX(adv, t2) on the local batch) except the main term, which becomes A-InfoNCE
(``rcs.losses.ainfonce``) over the global batch::

    L = A-InfoNCE([t1; t2; adv]) + (1/λ) NTX_2([adv; t2])

``train.ainfonce_variant``: ``ip`` (adversarial views as inferior positives: clean anchors are
pulled toward them with weight γ λ_a, γ = ``train.ainfonce_ip_degree`` = 0.2), ``hn`` (the
debiased hard-negative estimator with τ⁺ = 0.12, β = 1) or ``iphn`` (both; published best, with
lr 0.3 instead of RoCL's 0.1 x 15 LARS multiplier).
"""

from __future__ import annotations

import torch

from rcs.losses import ainfonce_rocl_loss, rocl_nt_xent
from rcs.methods.base import StepOutput, at_least_two, register_method
from rcs.methods.rocl import RoCL
from rcs.utils.distributed import gather_batch


@register_method("arocl")
class ARoCL(RoCL):
    name = "arocl"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        # the hard-negative estimator needs a second image (a coreset epoch's last batch)
        return super().step(forward, model, at_least_two(x), y, augment, generator)

    def terms(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.cfg.train
        z1, z2, za = outputs[0].chunk(3)
        main = ainfonce_rocl_loss([gather_batch(v) for v in (z1, z2, za)], t.temperature,
                                  t.ainfonce_variant, t.ainfonce_ip_degree,
                                  t.ainfonce_adv_weight, t.ainfonce_tau_plus, t.ainfonce_beta)
        return main, rocl_nt_xent([za, z2], t.temperature)
