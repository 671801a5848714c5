"""DynACL (Luo et al., ICLR 2023): dynamic augmentation for ACL.

Strength s steps down by 0.05 every ``train.dynacl.period`` epochs (scaled to the run length,
50 of 1000 as published); the augmentation uses s (crop scale (1 - 0.9 s, 1), jitter x s, their
probabilities x s) and the loss weights the streams with w = (2/3)(1 - s):
L = ((1 - w) NTX(z_nat) + (1 + w) NTX(z_adv)) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcs.config.checks import check
from rcs.losses import dynacl_strength, dynacl_weight
from rcs.methods.acl import ACL
from rcs.methods.base import register_method, register_settings


@dataclass
class DynaclSettings:
    """``train.dynacl``: DynACL's augmentation schedule (methods dynacl and dynacl_air)."""

    period: int = 50
    """Strength drops by 0.05 every ``period`` epochs (scaled to 1000 epochs)."""

    def validate(self) -> None:
        check(self.period > 0, "train.dynacl.period must be > 0")


register_settings("dynacl", DynaclSettings)


class DynamicAugmentation:
    """Mixin: sets the augmentation strength from the DynACL schedule at each epoch start."""

    strength: float = 1.0

    def on_epoch_start(self, epoch: int, augment) -> dict[str, float]:
        cfg = self.cfg  # type: ignore[attr-defined]
        self.strength = dynacl_strength(epoch, cfg.train.epochs, cfg.train.dynacl.period)
        augment.strength = self.strength
        return {"strength": self.strength, "w": dynacl_weight(self.strength)}


@register_method("dynacl")
class DynACL(DynamicAugmentation, ACL):
    name = "dynacl"

    def weights(self) -> tuple[float, float]:
        w = dynacl_weight(self.strength)
        return 1.0 - w, 1.0 + w
