"""The ``eval`` section: clean, PGD-20, AutoAttack, corruptions, randomized smoothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcs.config.checks import check, check_in
from rcs.config.model import AttackConfig

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression",
)
"""The 15 CIFAR-10-C / CIFAR-100-C corruptions of RobustBench (Hendrycks & Dietterich 2019)."""


@dataclass
class EvalConfig:
    """Evaluation of a classifier: clean, PGD-20, AutoAttack, corruptions, smoothing."""

    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd20"])
    """clean | pgd20 | autoattack | corruptions | smoothing"""
    pgd: AttackConfig = field(default_factory=lambda: AttackConfig(steps=20))
    """PGD evaluation attack (CE, eval mode, uniform random start): 20 steps of 2/255, eps 8/255."""
    limit: int = 0
    """Evaluate clean / PGD on the first ``limit`` test images only (0 = the whole test split)."""
    autoattack_n_ex: int = 0
    """Evaluate AutoAttack on the first n test images only (0 = all)."""
    autoattack_version: str = "standard"
    """standard | plus | rand (AutoAttack's versions)."""
    corruptions_root: str = ""
    """Folder with CIFAR-10-C / CIFAR-100-C style files: <corruption>.npy + labels.npy."""
    corruptions: list[str] = field(default_factory=list)
    """Corruptions to evaluate (empty = the 15 standard ones)."""
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Corruption severities evaluated (1..5)."""
    corruptions_n_ex: int = 0
    """Images per corruption and severity (0 = all, 10,000 for CIFAR-10-C)."""
    batch_size: int = 256
    """Images per evaluation batch (clean, PGD, AutoAttack, corruptions)."""
    seed: int = 1
    """Seed of the PGD random starts (the ACL code seeds 1 before its test loop)."""
    smoothing_sigma: float = 0.25
    """Randomized smoothing (Cohen et al. 2019): std σ of the Gaussian noise (0.12 / 0.25 / 0.5
    / 1.0 in the paper)."""
    smoothing_n0: int = 100
    """CERTIFY: noise samples that pick the top class (published 100)."""
    smoothing_n: int = 100000
    """CERTIFY: noise samples that bound its probability (published 100,000)."""
    smoothing_alpha: float = 0.001
    """CERTIFY: failure probability α of the Clopper-Pearson bound (published 0.001)."""
    smoothing_radii: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """L2 radii at which certified accuracy is reported."""
    smoothing_n_ex: int = 500
    """Certify the first n test images (0 = all; Cohen et al. certify 500 CIFAR-10 images)."""
    smoothing_batch: int = 1000
    """Noisy copies per forward pass."""

    def validate(self) -> None:
        for a in self.attacks:
            check_in("eval.attacks entry", a,
                ("clean", "pgd20", "autoattack", "corruptions", "smoothing"))
        check(self.smoothing_sigma > 0, "eval.smoothing_sigma must be > 0")
        check(self.smoothing_n0 >= 1 and self.smoothing_n >= 1 and self.smoothing_batch >= 1,
              "eval.smoothing_n0, eval.smoothing_n and eval.smoothing_batch must be >= 1")
        check(0.0 < self.smoothing_alpha < 1.0, "eval.smoothing_alpha must be in (0, 1)")
        check(all(r >= 0 for r in self.smoothing_radii) and len(self.smoothing_radii) > 0,
              "eval.smoothing_radii must be a non-empty list of radii >= 0")
        check(self.smoothing_n_ex >= 0, "eval.smoothing_n_ex must be >= 0 (0 = all)")
        for c in self.corruptions:
            check_in("eval.corruptions entry", c, CORRUPTIONS)
        check(all(1 <= s <= 5 for s in self.severities) and len(self.severities) > 0,
              "eval.severities must be a non-empty list of values in 1..5")
        check_in("eval.autoattack_version", self.autoattack_version, ("standard", "plus", "rand"))
        check(self.limit >= 0 and self.autoattack_n_ex >= 0 and self.corruptions_n_ex >= 0,
              "eval.limit, eval.autoattack_n_ex and eval.corruptions_n_ex must be >= 0")
        check(self.batch_size > 0, "eval.batch_size must be > 0")
        self.pgd.validate("eval.pgd")
