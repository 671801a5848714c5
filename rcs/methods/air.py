"""AIR (Xu et al., NeurIPS 2023): ACL plus standard and adversarial invariant regularisation.

L = (1 - w) L_nat + (1 + w) L_adv + λ1 SIR + λ2 AIR, with a third train-mode forward of the
un-augmented image through the ``normal`` BN. ``air`` uses w = 0 (ACL-AIR); ``dynacl_air``
takes w and the augmentation strength from the DynACL schedule. ``train.air.variant`` picks
the published (``faithful``) or the true-KL (``corrected``) regularisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.config.checks import check_in
from rcs.data import to_float
from rcs.losses import air_terms
from rcs.methods.acl import contrastive_views
from rcs.methods.base import Method, StepOutput, register_method, register_settings
from rcs.methods.dynacl import DynamicAugmentation
from rcs.utils.distributed import gather_batch


@dataclass
class AirSettings:
    """``train.air``: the AIR regularisers' weights and variant (methods air and dynacl_air, and
    the air selection loss)."""

    lambda1: float = 0.5
    """Weight λ1 of the standard invariant regulariser (SIR)."""
    lambda2: float = 0.5
    """Weight λ2 of the adversarial invariant regulariser (AIR)."""
    variant: str = "faithful"
    """faithful (default: the published AIR code's regularisers, probabilities passed where
    log-probabilities are expected; what the published numbers come from) | corrected (true KL
    divergences with renormalised P, Q: a different method, offered as a named option)."""

    def validate(self) -> None:
        check_in("train.air.variant", self.variant, ("corrected", "faithful"))


register_settings("air", AirSettings)


@register_method("air")
class AIR(Method):
    name = "air"

    def w(self) -> float:
        return 0.0

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        if x.shape[0] == 1:  # the un-augmented forward's BatchNorm1d needs two rows (as AdvCL)
            x = x.repeat(2, 1, 1, 1)
        v, v_adv = contrastive_views(model, x, augment, generator, self.cfg)
        x_ori = to_float(x)
        outs = forward([(v, "normal", "proj"), (v_adv, "pgd", "proj"), (x_ori, "normal", "proj")])
        loss, terms = self.loss_and_terms(outs)
        return StepOutput(loss, {k: float(v.detach()) for k, v in terms.items()})

    def loss_and_terms(self, outputs: list[torch.Tensor]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = self.cfg.train
        z_nat, z_adv, z_ori = (gather_batch(z) for z in outputs)
        terms = air_terms(z_nat, z_adv, z_ori, t.temperature, t.air.variant)
        w = self.w()
        loss = ((1 - w) * terms["nat"] + (1 + w) * terms["adv"] + t.air.lambda1 * terms["sir"]
                + t.air.lambda2 * terms["air"])
        return loss, terms

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return self.loss_and_terms(outputs)[0]

    @classmethod
    def selection_loss(cls) -> str:
        return "air"


@register_method("dynacl_air")
class DynACLAIR(DynamicAugmentation, AIR):
    name = "dynacl_air"

    def w(self) -> float:
        from rcs.losses import dynacl_weight

        return dynacl_weight(self.strength)
