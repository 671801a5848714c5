"""AACL: ACL with A-InfoNCE's hard-negative form (Yu et al., ECCV 2022, "Adversarial
Contrastive Learning via Asymmetric InfoNCE").

ACL's dual stream (``rcs.methods.acl``: contrastive PGD of both views through the ``pgd`` BN in
eval mode; clean views through ``normal``, adversarial views through ``pgd``) with each stream's
NT-Xent replaced by the debiased hard-negative estimator A-InfoNCE's ``HN`` variant uses
(``rcs.losses.hcl``; τ⁺ = ``train.ainfonce.tau_plus`` = 0.12, β = ``train.ainfonce.beta`` = 1)::

    L = ½ [ HN(z_nat) + HN(z_adv) ]

A-InfoNCE's other half, inferior positives (``ip``), weights clean <-> adversarial positive
pairs; ACL has no such pair (its adversarial views are positives of each other only), so it has
nothing to act on here - ``arocl`` has both. The published A-InfoNCE code builds on RoCL and
AdvCL, not ACL: this combination is ours.
"""

from __future__ import annotations

import torch

from rcs.losses import hcl_loss
from rcs.methods.acl import ACL
from rcs.methods.base import StepOutput, at_least_two, register_method
from rcs.utils.distributed import gather_batch


@register_method("aacl")
class AACL(ACL):
    name = "aacl"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        # the hard-negative estimator needs a second image (a coreset epoch's last batch)
        return super().step(forward, model, at_least_two(x), y, augment, generator)

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        z_nat, z_adv = (gather_batch(z) for z in outputs)
        return (hcl_loss(z_nat, t.temperature, t.ainfonce.tau_plus, t.ainfonce.beta)
                + hcl_loss(z_adv, t.temperature, t.ainfonce.tau_plus, t.ainfonce.beta)) / 2
