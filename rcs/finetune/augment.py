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

import torch
import torch.nn.functional as F

from rcs.data import to_float


def _rand_int(n: int, high: int, generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high, (n,), generator=generator, device=dev)


def crop_flip(x: torch.Tensor, padding: int = 4, flip_prob: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly padded-cropped and flipped float32 copy of a [B, 3, H, W] batch (uint8 or float)."""
    x = to_float(x)
    b, _, h, w = x.shape
    dev_gen = generator.device if generator is not None else torch.device("cpu")
    if padding > 0:
        top = _rand_int(b, 2 * padding + 1, generator).to(x.device)
        left = _rand_int(b, 2 * padding + 1, generator).to(x.device)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = top[:, None] + torch.arange(h, device=x.device)  # [B, H]
        cols = left[:, None] + torch.arange(w, device=x.device)  # [B, W]
        bidx = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
        x = x.permute(0, 3, 1, 2).contiguous()
    else:
        x = x.clone()
    flip = (torch.rand((b,), generator=generator, device=dev_gen) < flip_prob).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
