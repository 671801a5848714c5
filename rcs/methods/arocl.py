"""ARoCL: RoCL with A-InfoNCE (Yu et al., ECCV 2022, "Adversarial Contrastive Learning via
Asymmetric InfoNCE"; the published RoCL-IP / -HN / -IPHN).

Everything is RoCL's (``rcs.methods.rocl``: single BN, instance-wise PGD of ``t1`` against
``t2`` in eval mode, one train-mode forward of ``[t1; t2; adv]``, the 1/λ regulariser
NTX(adv, t2) on the local batch) except the main term, which becomes A-InfoNCE
(``rcs.losses.ainfonce``) over the global batch::

    L = A-InfoNCE([t1; t2; adv]) + (1/λ) NTX_2([adv; t2])

``train.ainfonce.variant``: ``ip`` (adversarial views as inferior positives: clean anchors are
pulled toward them with weight γ λ_a, γ = ``train.ainfonce.ip_degree`` = 0.2), ``hn`` (the
debiased hard-negative estimator with τ⁺ = 0.12, β = 1) or ``iphn`` (both; published best, with
lr 0.3 instead of RoCL's 0.1 x 15 LARS multiplier).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.config.checks import check, check_in
from rcs.losses import ainfonce_rocl_loss, rocl_nt_xent
from rcs.methods.base import StepOutput, at_least_two, register_method, register_settings
from rcs.methods.rocl import RoCL
from rcs.utils.distributed import gather_batch


@dataclass
class AinfonceSettings:
    """``train.ainfonce``: A-InfoNCE's estimator (methods arocl, and aacl's tau_plus / beta)."""

    variant: str = "iphn"
    """ip (adversarial views as inferior positives) | hn (hard-negative estimator) | iphn (both;
    published best)."""
    ip_degree: float = 0.2
    """Share γ of the clean-anchor -> adversarial-positive terms (the adversarial anchor -> clean
    positive terms get 1 - γ); published 0.2."""
    adv_weight: float = 1.0
    """Weight of the adversarial pair terms under ip (published 1)."""
    tau_plus: float = 0.12
    """τ⁺ of the hard-negative estimator (published 0.12; aacl too)."""
    beta: float = 1.0
    """β of the hard-negative estimator (published 1.0; aacl too)."""

    def validate(self) -> None:
        check_in("train.ainfonce.variant", self.variant, ("ip", "hn", "iphn"))
        check(0.0 <= self.ip_degree <= 1.0, "train.ainfonce.ip_degree must be in [0, 1]")
        check(0.0 <= self.tau_plus < 1.0, "train.ainfonce.tau_plus must be in [0, 1)")
        check(self.adv_weight >= 0 and self.beta >= 0,
              "train.ainfonce.adv_weight and train.ainfonce.beta must be >= 0")


register_settings("ainfonce", AinfonceSettings)


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
                                  t.ainfonce.variant, t.ainfonce.ip_degree,
                                  t.ainfonce.adv_weight, t.ainfonce.tau_plus, t.ainfonce.beta)
        return main, rocl_nt_xent([za, z2], t.temperature)
