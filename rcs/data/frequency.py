"""High-frequency component of images by an FFT high-pass filter (AdvCL's HFC view, ``fr_util.py``).

Per image and channel, with the spectrum centred (``fftshift``: zero frequency at index
``(H // 2, W // 2)``) and the disc mask ``M_r[i, j] = 1`` iff
``sqrt((i - H // 2)^2 + (j - W // 2)^2) < r``::

    x_HFC = Re( IFFT2( ifftshift( fftshift(FFT2(x)) * (1 - M_r) ) ) )

so every frequency closer than ``r`` to the centre (the low ones, the mean included) is removed
and every other one is kept unchanged. The mask is symmetric under (u, v) -> (-u, -v), so the
filtered spectrum stays Hermitian and the real part loses nothing. No clamping: values may be
negative, as published (r = 8 for 32x32 CIFAR images). Computed in fp32 (fp64 input stays
fp64); the mask is built once per (size, radius, device) and cached.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["high_pass", "low_frequency_mask"]


@functools.lru_cache(maxsize=32)
def _mask(h: int, w: int, radius: float, device: str) -> torch.Tensor:
    i = torch.arange(h, dtype=torch.float64)[:, None] - h // 2
    j = torch.arange(w, dtype=torch.float64)[None, :] - w // 2
    return (torch.sqrt(i * i + j * j) < radius).to(device)


def low_frequency_mask(h: int, w: int, radius: float,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean ``[H, W]`` mask, in centred (``fftshift``) coordinates, of the removed disc."""
    return _mask(int(h), int(w), float(radius), str(torch.device(device)))


def high_pass(x: torch.Tensor, radius: float) -> torch.Tensor:
    """High-frequency component of a float batch ``[..., H, W]`` (see the module docstring)."""
    if not x.is_floating_point():
        raise TypeError("high_pass needs float images in [0, 1] (use rcs.data.to_float)")
    h, w = x.shape[-2:]
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    keep = ~low_frequency_mask(h, w, radius, x.device)
    keep = torch.fft.ifftshift(keep, dim=(-2, -1))  # the same mask on the unshifted spectrum
    with torch.autocast(device_type=x.device.type, enabled=False):
        spec = torch.fft.fft2(x.to(dt), dim=(-2, -1))
        return torch.fft.ifft2(spec * keep, dim=(-2, -1)).real.contiguous()
