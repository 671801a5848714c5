"""The ``finetune`` section: RobustSSL fine-tuning (SLF / ALF / AFF), each mode on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcs.config.checks import check, check_in
from rcs.config.model import AttackConfig


@dataclass
class FinetuneModeConfig:
    """One fine-tuning mode's optimisation (SGD + MultiStepLR x0.1). Unset values (null) come
    from the published RobustSSL protocol of the pretraining method (``finetune.protocol``)."""

    epochs: int | None = None
    """Epochs (null = protocol: SLF/ALF 25; AFF 25 for DynACL-style, 100 for ACL/ACL-AIR)."""
    lr: float | None = None
    """Initial lr (null = protocol: SLF/ALF 0.01 on CIFAR-10, 0.05 on CIFAR-100, 0.1 on STL-10
    at 96 px, 0.01 on STL-10 at 32 px; AFF 0.1)."""
    batch_size: int | None = None
    """Batch size (null = protocol: SLF/ALF 512, 128 on STL-10 at 32 px; AFF 128). Fine-tuning
    runs in one process, so this is the whole (global) batch."""
    milestones: list[int] | None = None
    """Epochs after which the lr is multiplied by 0.1 (null = protocol: 10,20 / 15,20 / 40,60;
    DynACL's AFF on STL-10 at 96 px 10,20)."""
    weight_decay: float = 2e-4
    """SGD weight decay (published 2e-4)."""
    momentum: float = 0.9
    """SGD momentum (published 0.9)."""

    def validate(self, where: str) -> None:
        check(self.epochs is None or self.epochs > 0, f"{where}.epochs must be > 0")
        check(self.lr is None or self.lr > 0, f"{where}.lr must be > 0")
        check(self.batch_size is None or self.batch_size > 0, f"{where}.batch_size must be > 0")
        check(self.milestones is None or all(m > 0 for m in self.milestones),
              f"{where}.milestones must be positive epochs")
        check(self.weight_decay >= 0 and self.momentum >= 0,
              f"{where}.weight_decay and {where}.momentum must be >= 0")


@dataclass
class FinetuneConfig:
    """RobustSSL fine-tuning; every mode is configured on its own (no carry-over)."""

    modes: list[str] = field(default_factory=lambda: ["slf"])
    """Modes run by `rcs finetune` without --mode: slf | alf | aff."""
    protocol: str = "auto"
    """Published settings that fill unset mode values: auto (from the checkpoint's train.method) |
    acl | air | dynacl | dynacl_air | advcl | none (every mode value must then be set)."""
    slf: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    alf: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    aff: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    trades_beta: float = 6.0
    """AFF: weight of the TRADES KL term."""
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10))
    """ALF (CE) and AFF (TRADES KL) training attack: PGD-10, eps 8/255, step 2/255."""
    aff_dual_bn: bool = True
    """AFF: clean images through the 'normal' BN, adversarial ones through 'pgd' (the published
    default); false fine-tunes the exported single-BN branch only (as for AdvCL)."""
    branch: str = "pgd"
    """BN branch of the pretrained encoder that is exported and fine-tuned."""
    padding: int = 4
    """Fine-tuning augmentation: random crop with this zero padding, then a horizontal flip."""
    noise_sigma: float = 0.0
    """SLF / ALF: add N(0, σ²) noise to every training image (the Gaussian-augmentation base
    classifier of randomized smoothing, as RUSH trains it); 0 = off."""
    label_fraction: float = 1.0
    """Share of the labelled training split used (1.0, 0.1, 0.01 in the label-efficiency
    experiments): round(fraction * N) images, class-balanced, drawn with finetune.seed."""
    seed: int = 0
    """Seed of fine-tuning: batch order, augmentation, attack starts, label subset."""

    def validate(self) -> None:
        for m in self.modes:
            check_in("finetune.modes entry", m, ("slf", "alf", "aff"))
        check_in("finetune.protocol", self.protocol,
            ("auto", "acl", "air", "dynacl", "dynacl_air", "advcl", "none"))
        check(0.0 < self.label_fraction <= 1.0,
              f"finetune.label_fraction={self.label_fraction} must be in (0, 1] (e.g. 0.01 = 1%)")
        for m in ("slf", "alf", "aff"):
            getattr(self, m).validate(f"finetune.{m}")
        check(self.trades_beta >= 0, "finetune.trades_beta must be >= 0")
        check(self.padding >= 0, "finetune.padding must be >= 0")
        check(self.noise_sigma >= 0, "finetune.noise_sigma must be >= 0 (0 = off)")
        self.attack.validate("finetune.attack")
