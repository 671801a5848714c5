"""On-device batched SimCLR/ACL augmentation in plain torch, with per-sample random parameters.

Pipeline (the order of the ACL/DynACL torchvision transforms), for strength ``s`` in [0, 1]:

1. ``crop: resized`` (default): random resized crop back to the input size. Area share
   ~ U(scale), aspect ratio r with log r ~ U(log ratio); w = round(sqrt(A r)),
   h = round(sqrt(A / r)); the first of 10 tries with ``w <= W, h <= H`` is used, else a centre
   crop clamped to the ratio range (torchvision's ``RandomResizedCrop`` sampling).
   scale = (1 - 0.9 s, 1) when ``dynacl_crop`` else ``crop_scale``. The crop and the flip are
   one ``affine_grid``/``grid_sample`` call (bilinear / bicubic / nearest, border padding,
   align_corners=False).
   ``crop: pad``: torchvision's ``RandomCrop(size, padding=p)`` (p = ``crop_padding``): the
   image is zero-padded by p on every side and an H x W window is cut at a top-left corner
   uniform in {0, ..., 2p}^2, i.e. the image moves by an offset uniform in [-p, p] on each axis
   (offset 0: the image itself); no resampling (:func:`crop_flip`). The published SAT
   pretraining and every fine-tuning mode augment this way;
2. horizontal flip with probability ``flip_prob`` (not annealed, as in DynACL);
3. with probability ``jitter_prob * s``: colour jitter with brightness b, contrast c,
   saturation t drawn from U(max(0, 1 - m s), 1 + m s) and a hue shift from U(-m_h s, m_h s),
   applied in a random order drawn per sample (as torchvision draws one per image);
4. with probability ``grayscale_prob * s``: ITU-R 601 luma Y = 0.299 R + 0.587 G + 0.114 B
   copied to the three channels.

``s = 0`` turns every step off: the output is ``to_float(x)`` exactly. Random parameters are
drawn on the generator's device (CPU by default) and only the per-sample values are moved to the
batch's device, so a seeded CPU generator gives the same output on every device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rcs.config.schema import AugmentConfig
from rcs.errors import ConfigError

LUMA = (0.299, 0.587, 0.114)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x if x.dtype == torch.float32 else x.float()


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=dev)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * _rand((n,), generator)


# --------------------------------------------------------------------------- colour functions
def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of [..., 3, H, W] as [..., 1, H, W]."""
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV (hue in [0, 1), saturation, value) on dim -3."""
    r, g, b = x.unbind(-3)
    maxc, minc = x.amax(-3), x.amin(-3)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return torch.stack((hue, sat, maxc), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB: channel n in (R, G, B) = v - v s clip(min(k, 4 - k), 0, 1), k = (n' + 6h) mod 6
    with n' = 5, 3, 1."""
    h, s, v = x.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=-3)


def _f(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clip(b x)`` per sample (``factor`` [B])."""
    return (x * _f(factor)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clip(c x + (1 - c) mean(Y))`` with the per-image mean luma."""
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return (_f(factor) * x + (1 - _f(factor)) * mean).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clip(t x + (1 - t) Y)`` with the per-pixel luma."""
    return (_f(factor) * x + (1 - _f(factor)) * rgb_to_grayscale(x)).clamp(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (fraction of a turn, per sample) in HSV space."""
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1)).clamp(0.0, 1.0)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


# --------------------------------------------------------------------------- parameter sampling
def sample_crop_params(n: int, height: int, width: int, scale: tuple[float, float],
                       ratio: tuple[float, float], generator: torch.Generator | None = None,
                       tries: int = 10) -> torch.Tensor:
    """int64 [n, 4] crops ``(top, left, h, w)`` drawn like torchvision's RandomResizedCrop."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand((n, tries), generator))
    lr0, lr1 = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lr0 + (lr1 - lr0) * _rand((n, tries), generator))
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    u_top, u_left = _rand((n, tries), generator), _rand((n, tries), generator)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.int(), dim=1, keepdim=True)
    found = ok.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    top = torch.floor(u_top.gather(1, first)[:, 0] * (height - h + 1).float()).long()
    left = torch.floor(u_left.gather(1, first)[:, 0] * (width - w + 1).float()).long()
    top, left = torch.minimum(top, height - h), torch.minimum(left, width - w)
    in_ratio = width / height  # fallback: the largest centred crop within the ratio range
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    fb = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], device=w.device)
    params = torch.stack((top, left, h, w), dim=1)
    return torch.where(found[:, None], params, fb.expand(n, 4))


def sample_jitter_params(n: int, brightness: float, contrast: float, saturation: float,
                         hue: float, generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``factors`` [n, 4] (brightness, contrast, saturation, hue shift) and ``order`` [n, 4]
    (a random permutation of the four ops per sample)."""
    factors = torch.stack([
        _uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator),
        _uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator),
        _uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator),
        _uniform(n, -hue, hue, generator),
    ], dim=1)
    order = torch.argsort(_rand((n, 4), generator), dim=1)
    return factors, order


def resized_crop(x: torch.Tensor, crops: torch.Tensor, flip: torch.Tensor,
                 size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Crop ``crops`` (top, left, h, w) of each image, mirror where ``flip``, resize to ``size``.

    A whole-image crop at the input size is copied (or mirrored) exactly, not resampled.
    """
    b, c, height, width = x.shape
    cr = crops.to(device=x.device, dtype=x.dtype)
    top, left, h, w = cr.unbind(1)
    sign = 1.0 - 2.0 * flip.to(device=x.device, dtype=x.dtype)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [b, c, size[0], size[1]], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    if mode == "bicubic":
        out.clamp_(0.0, 1.0)
    if tuple(size) == (height, width):
        full = (crops.cpu() == torch.tensor([0, 0, height, width])).all(1)
        flip_cpu = flip.cpu()
        for sel, mirror in ((full & ~flip_cpu, False), (full & flip_cpu, True)):
            idx = torch.nonzero(sel).flatten().to(x.device)
            if len(idx):
                out[idx] = x[idx].flip(-1) if mirror else x[idx]
    return out


def sample_pad_offsets(n: int, padding: int, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 ``(top, left)`` [n] each, uniform in {0, ..., 2 padding} (drawn in that order)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    return top, left


def pad_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, padding: int
             ) -> torch.Tensor:
    """``pad(x, padding)[:, :, top:top + H, left:left + W]`` per image (zero padding), in one
    gather over the batch."""
    b, _, h, w = x.shape
    top, left = top.to(x.device), left.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = left[:, None] + torch.arange(w, device=x.device)  # [B, W]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def crop_flip(x: torch.Tensor, padding: int = 4, flip_prob: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomCrop(size, padding) + RandomHorizontalFlip(flip_prob)`` of a [B, 3, H, W] batch
    (uint8 or float) as a float32 copy: offsets from :func:`sample_pad_offsets`, then one flip
    draw per image; random numbers on the generator's device."""
    x = to_float(x)
    b = x.shape[0]
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    if padding > 0:
        x = pad_crop(x, *sample_pad_offsets(b, padding, generator), padding)
    else:
        x = x.clone()
    flip = (_rand((b,), generator) < flip_prob).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def apply_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 apply: torch.Tensor) -> torch.Tensor:
    """Apply the four jitter ops in each sample's ``order`` to the samples where ``apply``."""
    x = x.clone()
    factors, order, apply = factors.cpu(), order.cpu(), apply.cpu()
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
    for step in range(4):
        for op, fn in enumerate(JITTER_OPS):
            sel = apply & (order[:, step] == op) & (factors[:, op] != identity[op])
            idx = torch.nonzero(sel).flatten()
            if len(idx):
                dev_idx = idx.to(x.device)
                x[dev_idx] = fn(x[dev_idx], factors[idx, op].to(device=x.device, dtype=x.dtype))
    return x


class Augment:
    """Callable batch augmentation: ``aug(x, generator) -> float32 [B, 3, H, W]`` in [0, 1]."""

    def __init__(self, cfg: AugmentConfig | None = None, size: tuple[int, int] | None = None):
        self.cfg = cfg if cfg is not None else AugmentConfig()
        self.cfg.validate()
        self.size = size
        self._strength = float(self.cfg.strength)

    @property
    def strength(self) -> float:
        """DynACL's s in [0, 1]; settable between epochs."""
        return self._strength

    @strength.setter
    def strength(self, s: float) -> None:
        if not 0.0 <= s <= 1.0:
            raise ConfigError(f"augmentation strength {s} must be in [0, 1]")
        self._strength = float(s)

    def settings(self) -> dict[str, object]:
        """The effective crop scale, jitter magnitudes and probabilities at the current strength."""
        s, c = self._strength, self.cfg
        scale = (1.0 - 0.9 * s, 1.0) if c.dynacl_crop else tuple(c.crop_scale)
        return {"crop": c.crop, "padding": c.crop_padding if c.crop == "pad" else None,
                "scale": scale, "ratio": tuple(c.crop_ratio), "flip_prob": c.flip_prob,
                "jitter": tuple(m * s for m in c.jitter), "jitter_prob": c.jitter_prob * s,
                "grayscale_prob": c.grayscale_prob * s}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a [B, 3, H, W] batch, got {tuple(x.shape)}")
        if self._strength == 0.0:
            return x.clone()
        st = self.settings()
        n, _, height, width = x.shape
        if self.cfg.crop == "pad":
            if self.size is not None and tuple(self.size) != (height, width):
                raise ConfigError(f"augment.crop=pad keeps the input size {height}x{width}; "
                                  f"it cannot resize to {tuple(self.size)} (use crop=resized)")
            out = crop_flip(x, self.cfg.crop_padding, st["flip_prob"], generator)
        else:
            crops = sample_crop_params(n, height, width, st["scale"], st["ratio"], generator)
            flip = _rand((n,), generator) < st["flip_prob"]
            out = resized_crop(x, crops, flip, self.size or (height, width),
                               self.cfg.interpolation)
        factors, order = sample_jitter_params(n, *st["jitter"], generator=generator)
        jit = _rand((n,), generator) < st["jitter_prob"]
        out = apply_jitter(out, factors, order, jit)
        gray = (_rand((n,), generator) < st["grayscale_prob"]).cpu()
        idx = torch.nonzero(gray).flatten().to(out.device)
        if len(idx):
            out[idx] = rgb_to_grayscale(out[idx]).expand(-1, 3, -1, -1)
        return out

    def two_views(self, x: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of the same batch."""
        x = to_float(x)
        return self(x, generator), self(x, generator)
