"""ACL (Jiang et al., NeurIPS 2020), dual stream: L = ½[NTX(z_nat) + NTX(z_adv)].

Both augmented views are attacked with contrastive PGD through the 'pgd' BN branch in eval mode;
clean views go through 'normal' BN, adversarial views through 'pgd' BN, model in train mode.
"""

from __future__ import annotations

import torch
from torch import nn

from rcs.attacks import objectives, pgd
from rcs.losses import acl_loss
from rcs.methods.base import Method, StepOutput, paired_views, register_method
from rcs.utils.distributed import gather_batch


def contrastive_views(model: nn.Module, x: torch.Tensor, augment, generator: torch.Generator,
                      cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views (interleaved, [2B]) and their contrastive-PGD adversarial versions."""
    v = paired_views(x, augment, generator, cfg)
    a = cfg.train.attack
    loss_fn = objectives.contrastive(lambda t: model(t, "pgd"), cfg.train.temperature)
    v_adv = pgd(loss_fn, v, eps=a.eps, alpha=a.alpha, steps=a.steps,
                random_start=a.random_start, generator=generator, model=model)
    return v, v_adv


@register_method("acl")
class ACL(Method):
    name = "acl"

    def weights(self) -> tuple[float, float]:
        return 1.0, 1.0

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        v, v_adv = contrastive_views(model, x, augment, generator, self.cfg)
        outs = forward([(v, "normal", "proj"), (v_adv, "pgd", "proj")])
        return StepOutput(self.embedding_loss(outs))

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        z_nat, z_adv = (gather_batch(z) for z in outputs)  # global negatives under DDP
        w_nat, w_adv = self.weights()
        return acl_loss(z_nat, z_adv, self.cfg.train.temperature, w_nat=w_nat, w_adv=w_adv)
