"""The ``model`` section (encoder, head, BN branches) and the PGD ``AttackConfig`` used by
``train.attack``, ``finetune.attack`` and ``eval.pgd``."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcs.config.checks import check, check_in
from rcs.errors import warn

EPS_8 = 8 / 255
ALPHA_2 = 2 / 255


@dataclass
class ModelConfig:
    """The encoder, its BN branches and the projection head."""

    arch: str = "resnet18"
    """A registered arch (rcs.models.ARCHS, register_arch): resnet18 | resnet34 | resnet50 |
    wrn28_10 | wrn (set depth/widen) | a factory by dotted
    path, 'package.module:function', returning any nn.Module whose output is the feature vector
    (its BatchNorms become multi-BN; see rcs.models.external)"""
    width: int = 64
    """Channels of the first stage (64 = standard); small values make tiny test models."""
    blocks: list[int] = field(default_factory=list)
    """Blocks per stage, overriding the arch's (e.g. [1, 1] for a 2-stage tiny ResNet)."""
    depth: int = 28
    """WRN depth (6n+4)."""
    widen: int = 10
    """WRN widen factor."""
    head: str = "acl3"
    """acl3 (512-512-512 MLP, BN after each layer) | mlp2 (ImageNet 2-layer) | advcl (AdvCL:
    512-512-BN-128, one BN shared by the branches) | rocl (RoCL: 512-2048-128, no BN) | byol
    (BYOL/BYORL: 512-4096-BN-256) | none | a head added with register_head (rcs.models.HEADS)"""
    head_dim: int = 512
    """Output dim of the head (ACL 512, AdvCL/RoCL 128, BYOL 256)."""
    head_hidden: int = 0
    """Hidden width of the head; 0 = the head's default (the feature dim; rocl 2048, byol 4096)."""
    bn_names: list[str] = field(default_factory=lambda: ["normal", "pgd"])
    """BN branches of every multi-BN layer (clean views 'normal', adversarial views 'pgd'; AdvCL
    adds 'pgd_ce'; single-BN methods use ['normal'])."""
    normalize: str = "imagenet"
    """Input normalisation inside the model: imagenet | cifar10 | none"""
    num_classes: int = 10
    """Size of the classifier for SAT pretraining and fine-tuning."""

    def validate(self) -> None:
        check(bool(self.arch.strip()), "model.arch must name an encoder")
        check(bool(self.head.strip()), "model.head must name a head (or none)")
        check(self.head_hidden >= 0, "model.head_hidden must be >= 0 (0 = the head's default)")
        check_in("model.normalize", self.normalize, ("imagenet", "cifar10", "none"))
        check(self.width > 0, "model.width must be > 0")
        check(all(b > 0 for b in self.blocks), "model.blocks entries must be > 0")
        check((self.depth - 4) % 6 == 0, f"model.depth={self.depth} must be 6n+4 for a WRN")
        check(len(self.bn_names) >= 1 and len(set(self.bn_names)) == len(self.bn_names),
              "model.bn_names must be a non-empty list of distinct names")


@dataclass
class AttackConfig:
    """L-inf PGD settings (pixel space [0, 1]); accepts fractions like '8/255' in YAML."""

    eps: float = EPS_8
    """L-inf radius ε in [0, 1] pixel units (8/255)."""
    alpha: float = ALPHA_2
    """PGD step size (2/255)."""
    steps: int = 5
    """PGD steps (0 = no attack: the clean images)."""
    random_start: bool = True
    """Start from a uniform random point in the ε-ball (else from the clean image)."""

    def validate(self, where: str = "attack") -> None:
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            check(v >= 0, f"{where}.{name} must be >= 0")
            check(v <= 1, f"{where}.{name}={v:g} is larger than 1, but pixels are in [0, 1]: did "
                  f"you mean {v:g}/255? Write it as a fraction: --set {where}.{name}={v:g}/255")
        check(self.steps >= 0, f"{where}.steps must be >= 0")
        if self.eps > 32 / 255:
            warn(f"{where}.eps={self.eps:.4g} is {self.eps * 255:.4g}/255, far above the usual "
                 "8/255 (pixels are in [0, 1]); write eps as a fraction of 255 if you meant "
                 "pixel levels")
