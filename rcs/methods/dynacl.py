"""DynACL (Luo et al., ICLR 2023): dynamic augmentation for ACL.

Strength s steps down by 0.05 every ``train.dynacl_period`` epochs (scaled to the run length,
50 of 1000 as published); the augmentation uses s (crop scale (1 - 0.9 s, 1), jitter x s, their
probabilities x s) and the loss weights the streams with w = (2/3)(1 - s):
L = ((1 - w) NTX(z_nat) + (1 + w) NTX(z_adv)) / 2.
"""

from __future__ import annotations

from rcs.losses import dynacl_strength, dynacl_weight
from rcs.methods.acl import ACL
from rcs.methods.base import register_method


class DynamicAugmentation:
    """Mixin: sets the augmentation strength from the DynACL schedule at each epoch start."""

    strength: float = 1.0

    def on_epoch_start(self, epoch: int, augment) -> dict[str, float]:
        cfg = self.cfg  # type: ignore[attr-defined]
        self.strength = dynacl_strength(epoch, cfg.train.epochs, cfg.train.dynacl_period)
        augment.strength = self.strength
        return {"strength": self.strength, "w": dynacl_weight(self.strength)}


@register_method("dynacl")
class DynACL(DynamicAugmentation, ACL):
    name = "dynacl"

    def weights(self) -> tuple[float, float]:
        w = dynacl_weight(self.strength)
        return 1.0 - w, 1.0 + w
