"""Fine-tuning augmentation on the device: ``RandomCrop(size, padding=p) + RandomHorizontalFlip``.

For each image independently (torchvision's semantics, zero padding)::

    padded = zero-pad the image by p pixels on every side          [C, H + 2p, W + 2p]
    top, left ~ U{0, ..., 2p}                                      (uniform integers)
    out = padded[:, top:top + H, left:left + W]
    out = out flipped left-right with probability 1/2

One gather over the whole batch; the random numbers are drawn on the generator's device (CPU by
default), so a seeded CPU generator gives the same batch on every device.
"""

from __future__ import annotations

from rcs.data.augment import crop_flip  # the implementation lives in the data layer

__all__ = ["crop_flip"]
