"""The ``data`` and ``augment`` sections: which images, and how views are drawn."""

from __future__ import annotations

from dataclasses import dataclass

from rcs.config.checks import check, check_in


@dataclass
class DataConfig:
    """Which dataset to read and how to split it."""

    name: str = "synthetic"
    """A registered reader (rcs.data.readers.READERS): cifar10 | cifar100 | stl10 | imagenet32 |
    npz | folder | synthetic, or one added with register_reader; checked when the data are
    built and by every command before it starts."""
    root: str = ""
    """Folder (or .npz file) holding the dataset; see ``rcs.data`` for each expected layout."""
    split: str = "train"
    """Split used for pretraining/selection: train | test | unlabeled (STL-10) | train+unlabeled."""
    val_fraction: float = 0.01
    """Share of the training split held out as the RCS validation set U (never a candidate)."""
    limit: int = 0
    """Use only the first ``limit`` images (0 = all); handy for quick runs."""
    synthetic_size: int = 512
    """Number of images of the synthetic dataset."""
    num_classes: int = 10
    """Classes of the synthetic dataset (the readers take it from the files)."""
    image_size: int = 32
    """Side in pixels of the synthetic images (the readers take it from the files)."""
    download: bool = False
    """Download CIFAR-10/100 or STL-10 from the official URL (MD5-checked) when missing."""
    cache_dir: str = ""
    """Where decoded arrays are cached for memory-mapping (default: <root>/.rcs_cache)."""

    def validate(self) -> None:
        check(0.0 <= self.val_fraction < 1.0,
              f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        check(self.limit >= 0, "data.limit must be >= 0 (0 means all images)")
        check(self.synthetic_size > 0, "data.synthetic_size must be > 0")
        check(self.image_size > 0, "data.image_size must be > 0")
        if self.name not in ("synthetic",):
            check(bool(self.root), f"data.root is empty: set it to the folder holding "
                  f"{self.name} (e.g. --set data.root=/path/to/{self.name})")


@dataclass
class AugmentConfig:
    """On-device SimCLR-style augmentation; ``strength`` is DynACL's s (1 = full ACL strength)."""

    crop: str = "resized"
    """resized (RandomResizedCrop: SimCLR / ACL views) | pad (RandomCrop with zero padding
    crop_padding, no resize: the published SAT pretraining's RandomCrop(32, padding=4))."""
    crop_padding: int = 4
    """crop=pad: zero padding p; the image moves by an offset uniform in [-p, p] per axis."""
    crop_scale: tuple[float, float] = (0.08, 1.0)
    """RandomResizedCrop area range at strength 1; ACL/DynACL use (1 - 0.9 s, 1) = (0.1, 1)."""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """RandomResizedCrop aspect-ratio range (min, max)."""
    flip_prob: float = 0.5
    """Probability of a horizontal flip."""
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    """Brightness, contrast, saturation, hue jitter at strength 1."""
    jitter_prob: float = 0.8
    """Probability of applying the colour jitter (times strength)."""
    grayscale_prob: float = 0.2
    """Probability of converting a view to grayscale (times strength)."""
    strength: float = 1.0
    """Augmentation strength s in [0, 1] (DynACL anneals it; 1 = full ACL strength)."""
    dynacl_crop: bool = True
    """Crop scale is (1 - 0.9 s, 1) as in ACL/DynACL (overrides ``crop_scale`` when True)."""
    interpolation: str = "bilinear"
    """bilinear | bicubic | nearest"""

    def validate(self) -> None:
        lo, hi = self.crop_scale
        check(0.0 < lo <= hi <= 1.0, f"augment.crop_scale={self.crop_scale} must satisfy "
              "0 < min <= max <= 1")
        for n in ("flip_prob", "jitter_prob", "grayscale_prob", "strength"):
            v = getattr(self, n)
            check(0.0 <= v <= 1.0, f"augment.{n}={v} must be in [0, 1]")
        check_in("augment.interpolation", self.interpolation, ("bilinear", "bicubic", "nearest"))
        check_in("augment.crop", self.crop, ("resized", "pad"))
        check(self.crop_padding >= 0, f"augment.crop_padding={self.crop_padding} must be >= 0")
