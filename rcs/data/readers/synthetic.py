"""Procedural images with learnable class structure (for ``rcs demo`` and tests).

Class ``c`` has a fixed background colour, a fixed stripe colour and a sinusoidal grating of a
fixed orientation and frequency (all drawn from a generator that depends only on the number of
classes, so every split shares the same classes). Each image draws a random phase, contrast,
colour tint t, brightness offset b and pixel noise from ``seed``:

    x = clip(bg_c + t + a sin(2 pi f_c <p, u_c> + phi) (fg_c - bg_c) / 2 + b + N(0, 0.08^2))

The orientation and frequency survive colour jitter and grayscale, the colours survive crops, so
a small encoder learns the classes under the standard contrastive augmentations.
"""

from __future__ import annotations

import numpy as np

from rcs.data.dataset import ImageDataset
from rcs.errors import DataError
from rcs.utils.seed import generator

CLASS_SEED = 20231


def class_params(num_classes: int) -> dict[str, np.ndarray]:
    """Per-class colours, grating orientation (radians) and frequency (cycles per image)."""
    rng = generator(CLASS_SEED, num_classes)
    order = rng.permutation(num_classes)
    return {
        "bg": rng.uniform(0.15, 0.85, size=(num_classes, 3)).astype(np.float32),
        "fg": rng.uniform(0.0, 1.0, size=(num_classes, 3)).astype(np.float32),
        "theta": (np.pi * (order + rng.uniform(0, 0.3, num_classes)) / num_classes
                  ).astype(np.float32),
        "freq": (1.0 + (np.arange(num_classes) % 4) + rng.uniform(0, 0.5, num_classes)
                 ).astype(np.float32),
    }


def make_synthetic(n: int, image_size: int = 32, num_classes: int = 10, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8 NHWC) and balanced, shuffled labels; deterministic in ``seed``."""
    if n <= 0 or image_size <= 0 or num_classes <= 0:
        raise ValueError("n, image_size and num_classes must be > 0")
    p = class_params(num_classes)
    rng = generator(seed, n, image_size, num_classes)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    th, fr = p["theta"][labels], p["freq"][labels]
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    proj = (np.cos(th)[:, None, None] * coords[None, None, :]
            + np.sin(th)[:, None, None] * coords[None, :, None])  # [n, H, W]
    wave = np.sin(2 * np.pi * fr[:, None, None] * proj + phase[:, None, None])
    amp = rng.uniform(0.6, 1.0, n).astype(np.float32)
    tint = rng.uniform(-0.12, 0.12, (n, 3)).astype(np.float32)
    bg, fg = p["bg"][labels] + tint, p["fg"][labels] + tint  # [n, 3]
    x = bg[:, None, None, :] + (amp[:, None, None, None] * wave[..., None]
                                * (fg - bg)[:, None, None, :] * 0.5)
    x += rng.uniform(-0.08, 0.08, (n, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= 0.08
    x += noise
    x *= 255.0
    x += 0.5
    images = np.clip(x, 0, 255, out=x).astype(np.uint8)
    return images, labels


def read_synthetic(n: int = 512, image_size: int = 32, num_classes: int = 10, split: str = "train"
                   ) -> ImageDataset:
    """Synthetic ``train`` (seed 0, ``n`` images) or ``test`` (seed 1, ``max(C, n // 4)``)."""
    if split not in ("train", "test"):
        raise DataError(f"the synthetic dataset has splits 'train' and 'test', not {split!r}")
    if split == "test":
        images, labels = make_synthetic(max(num_classes, n // 4), image_size, num_classes, seed=1)
    else:
        images, labels = make_synthetic(n, image_size, num_classes, seed=0)
    return ImageDataset(images, labels, name=f"synthetic-{split}",
                        classes=[f"class_{i}" for i in range(num_classes)])
