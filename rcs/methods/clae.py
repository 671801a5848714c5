"""CLAE (Ho & Vasconcelos, NeurIPS 2020): contrastive learning with adversarial examples.

Per image two augmented views ``t1``, ``t2``. The adversarial example starts at ``t1`` and
takes FGSM / PGD steps (``train.attack``; published FGSM, ε = 0.03, no random start) on the
NT-Xent of the pair (anchor ``z(t1)``, ``z(x_adv)``), both through the adversarial BN branch
``pgd`` in eval mode (frozen parameters, running statistics). The loss
(``rcs.losses.clae``)::

    L = NTX(z(t1), z(t2)) + α NTX(z(t1), z(x_adv))                           (α = 1)

with clean views through the ``normal`` BN and the adversarial view through ``pgd`` (the
published code's separate adversarial BN, AdvProp-style), in one train-mode forward.
Needs ``model.bn_names`` to contain ``normal`` and ``pgd`` (the default). Fine-tuning exports
``pgd`` by default, as for ACL (``finetune.branch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rcs.attacks import attack_mode, pgd
from rcs.config.checks import check
from rcs.losses import clae_loss, nt_xent, pair_rows
from rcs.methods.base import Method, StepOutput, at_least_two, register_method, two_views
from rcs.utils.distributed import gather_batch


@dataclass
class ClaeSettings:
    """``train.clae``: CLAE's loss weight."""

    alpha: float = 1.0
    """Weight of the adversarial pair term, L = NTX(t1, t2) + alpha NTX(t1, adv)."""

    def validate(self) -> None:
        check(self.alpha >= 0, "train.clae.alpha must be >= 0")


@register_method("clae", settings=ClaeSettings)
class CLAE(Method):
    name = "clae"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        t, a = self.cfg.train, self.cfg.train.attack
        t1, t2 = two_views(at_least_two(x), augment, generator, self.cfg)
        with attack_mode(model), torch.no_grad():
            anchor = model(t1, "pgd")

        def objective(xa: torch.Tensor) -> torch.Tensor:
            return nt_xent(pair_rows(anchor, model(xa, "pgd")), t.temperature)

        x_adv = pgd(objective, t1, eps=a.eps, alpha=a.alpha, steps=a.steps,
                    random_start=a.random_start, generator=generator, model=model)
        outs = forward([(torch.cat([t1, t2]), "normal", "proj"), (x_adv, "pgd", "proj")])
        return StepOutput(self.embedding_loss(outs))

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        z1, z2 = outputs[0].chunk(2)
        z1, z2, za = (gather_batch(z) for z in (z1, z2, outputs[1]))  # global negatives
        return clae_loss(z1, z2, za, self.cfg.train.temperature, self.cfg.train.clae.alpha)
