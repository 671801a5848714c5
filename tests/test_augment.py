"""Statistics of the on-device augmentation (not just shapes)."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from rcs.config.schema import AugmentConfig
from rcs.data.augment import (
    Augment,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    hsv_to_rgb,
    rgb_to_hsv,
    sample_crop_params,
    sample_jitter_params,
    to_float,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def only(**kw: object) -> Augment:
    """Augment with every step off except those given (crop = whole image, no flip)."""
    base = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                jitter=(0.0, 0.0, 0.0, 0.0), jitter_prob=0.0, grayscale_prob=0.0, strength=1.0,
                dynacl_crop=False)
    base.update(kw)
    return Augment(AugmentConfig(**base))


def binomial_ok(k: int, n: int, p: float, z: float = 5.0) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def colourful(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=gen(seed), dtype=torch.uint8)


def test_flip_rate_and_exact_mirror() -> None:
    x = to_float(colourful(2000))
    out = only(flip_prob=0.5)(x, gen(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # each output is exactly the image or its mirror
    assert binomial_ok(int(mirrored.sum()), 2000, 0.5)


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 0.9), (0.5, 2.0))])
def test_crop_area_and_ratio(scale: tuple[float, float], ratio: tuple[float, float]) -> None:
    n, side = 20000, 512  # a large image makes the integer rounding of w, h negligible
    p = sample_crop_params(n, side, side, scale, ratio, gen(2)).double()
    top, left, h, w = p.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= side).all()
                and (left + w <= side).all())
    frac = (h * w / side**2).numpy()
    fallback = frac == 1.0  # 10 failed tries -> whole image (torchvision's fallback)
    assert fallback.mean() < 0.01 and (fallback | (frac <= scale[1] * 1.01)).all()  # rounding
    frac = frac[~fallback] if scale[1] < 1 else frac
    assert frac.min() >= scale[0] * 0.98
    hist, _ = np.histogram(frac, bins=10, range=scale)
    assert (hist > 0.02 * n).all()  # the whole range is covered
    ar = (w / h).numpy()
    assert ar.min() >= ratio[0] * 0.98 and ar.max() <= ratio[1] * 1.02
    logs = np.log(ar)
    assert logs.min() < math.log(ratio[0]) * 0.9 and logs.max() > math.log(ratio[1]) * 0.9
    small = sample_crop_params(500, 32, 32, scale, ratio, gen(3))
    assert bool((small[:, 0] + small[:, 2] <= 32).all() and (small[:, 2:] > 0).all())


def test_crop_fallback_is_centre() -> None:
    p = sample_crop_params(50, 10, 40, (0.9, 1.0), (1.0, 1.0), gen(0))  # a square never fits
    assert p.tolist() == [[0, 15, 10, 10]] * 50


def test_identity_at_strength_zero() -> None:
    x = colourful(64)
    aug = Augment(AugmentConfig(strength=0.0))
    out = aug(x, gen(0))
    assert out.dtype == torch.float32 and torch.equal(out, x.float() / 255)
    xf = torch.rand(4, 3, 8, 8)
    assert torch.equal(aug(xf), xf)
    aug.strength = 0.5
    assert aug.settings()["scale"] == pytest.approx((0.55, 1.0))
    assert aug.settings()["jitter_prob"] == pytest.approx(0.4)


def test_grayscale_rate_and_equal_channels() -> None:
    x = colourful(3000, size=4)
    out = only(grayscale_prob=0.2)(x, gen(4))
    gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert binomial_ok(int(gray.sum()), 3000, 0.2)
    xf = to_float(x)[gray]
    y = 0.299 * xf[:, 0] + 0.587 * xf[:, 1] + 0.114 * xf[:, 2]
    assert torch.allclose(out[gray][:, 0], y, atol=1e-6)
    assert torch.equal(out[~gray], to_float(x)[~gray])


def test_brightness_range_and_jitter_rate() -> None:
    x = torch.full((4000, 3, 4, 4), 0.4)
    out = only(jitter=(0.4, 0.0, 0.0, 0.0), jitter_prob=1.0)(x, gen(5))
    factor = out[:, 0, 0, 0] / 0.4
    assert bool((out == out[:, :1, :1, :1]).all())  # still constant per image
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.min() < 0.62 and factor.max() > 1.38
    half = only(jitter=(0.4, 0.0, 0.0, 0.0), jitter_prob=0.8, strength=0.5)(x, gen(6))
    changed = (half[:, 0, 0, 0] != 0.4)
    assert binomial_ok(int(changed.sum()), 4000, 0.4)  # probability 0.8 s
    f = half[changed, 0, 0, 0] / 0.4
    assert f.min() >= 0.8 - 1e-5 and f.max() <= 1.2 + 1e-5  # magnitude 0.4 s


def test_contrast_saturation_match_float64_formulas() -> None:
    x = torch.rand(6, 3, 5, 5, generator=gen(7), dtype=torch.float64)
    f = torch.tensor([0.0, 0.5, 1.0, 1.3, 0.7, 1.0], dtype=torch.float64)
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    mean = y.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    ref_c = (f.view(-1, 1, 1, 1) * x + (1 - f.view(-1, 1, 1, 1)) * mean).clamp(0, 1)
    ref_s = (f.view(-1, 1, 1, 1) * x + (1 - f.view(-1, 1, 1, 1)) * y[:, None]).clamp(0, 1)
    assert torch.allclose(adjust_contrast(x, f), ref_c, atol=1e-12)
    assert torch.allclose(adjust_saturation(x, f), ref_s, atol=1e-12)


def test_hsv_against_colorsys_and_round_trip() -> None:
    x = torch.rand(3, 3, 6, 6, generator=gen(8))
    x[0, :, 0, 0] = 0.5  # a gray pixel (undefined hue)
    hsv = rgb_to_hsv(x)
    px = x.permute(0, 2, 3, 1).reshape(-1, 3).double().tolist()
    ref = torch.tensor([colorsys.rgb_to_hsv(*p) for p in px], dtype=torch.float64)
    assert torch.allclose(hsv.permute(0, 2, 3, 1).reshape(-1, 3).double(), ref, atol=1e-5)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-5)
    shift = torch.tensor([0.1, -0.3, 0.45])
    out = adjust_hue(x, shift).permute(0, 2, 3, 1).reshape(3, -1, 3)
    for i in range(3):
        for j in range(0, 36, 7):
            h, s, v = colorsys.rgb_to_hsv(*x[i, :, j // 6, j % 6].tolist())
            want = colorsys.hsv_to_rgb((h + float(shift[i])) % 1.0, s, v)
            assert torch.allclose(out[i, j].double(), torch.tensor(want, dtype=torch.float64),
                                  atol=1e-5)


def test_zero_hue_shift_is_identity() -> None:
    x = torch.rand(8, 3, 6, 6, generator=gen(9))
    assert torch.allclose(adjust_hue(x, torch.zeros(8)), x, atol=1e-6)
    out = only(jitter=(0.0, 0.0, 0.0, 0.0), jitter_prob=1.0)(x, gen(0))
    assert torch.equal(out, x)


def test_jitter_order_is_a_random_permutation() -> None:
    factors, order = sample_jitter_params(4000, 0.4, 0.4, 0.4, 0.1, gen(10))
    assert bool((order.sort(1).values == torch.arange(4)).all())
    first = torch.bincount(order[:, 0], minlength=4)
    assert all(binomial_ok(int(k), 4000, 0.25) for k in first)
    assert factors[:, 3].abs().max() <= 0.1 and factors[:, :3].min() >= 0.6


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_full_pipeline_range_and_determinism(mode: str) -> None:
    x = colourful(32, size=16)
    aug = Augment(AugmentConfig(interpolation=mode))
    a, b = aug(x, gen(11)), aug(x, gen(11))
    assert torch.equal(a, b) and not torch.equal(a, aug(x, gen(12)))
    assert a.shape == (32, 3, 16, 16) and a.dtype == torch.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    v1, v2 = aug.two_views(x, gen(13))
    assert not torch.equal(v1, v2)
    torch.manual_seed(0)
    c = aug(x)
    torch.manual_seed(0)
    assert torch.equal(c, aug(x))


def test_pad_crop_offsets_uniform_zero_padding_and_identity() -> None:
    """crop=pad (SAT's RandomCrop(32, padding=4) + flip): every output is the image moved by an
    offset in [-4, 4]^2 with zeros where it moved in, mirrored or not; offsets are uniform and
    the unmoved image occurs. Checked by brute force against all 81 x 2 candidates built with
    plain slicing."""
    p, n, h = 4, 4050, 12
    img = 0.05 + 0.95 * torch.rand(3, h, h, generator=gen(1))   # no zero pixel
    aug = Augment(AugmentConfig(crop="pad", crop_padding=p, jitter_prob=0.0, grayscale_prob=0.0))
    out = aug(img.expand(n, -1, -1, -1), generator=gen(2))
    assert out.shape == (n, 3, h, h) and out.dtype == torch.float32
    cands, keys = [], []
    for dy in range(-p, p + 1):
        for dx in range(-p, p + 1):
            moved = torch.zeros(3, h, h)  # content at (i, j) comes from (i + dy, j + dx)
            src = img[:, max(0, dy):h + min(0, dy), max(0, dx):h + min(0, dx)]
            moved[:, max(0, -dy):h - max(0, dy), max(0, -dx):h - max(0, dx)] = src
            for mirror in (False, True):
                cands.append(moved.flip(-1) if mirror else moved)
                keys.append((dy, dx, mirror))
    match = (out.reshape(n, 1, -1) == torch.stack(cands).reshape(1, len(cands), -1)).all(-1)
    assert (match.sum(1) == 1).all()  # every output is exactly one candidate
    picked = [keys[i] for i in match.float().argmax(1).tolist()]
    counts = np.zeros((2 * p + 1, 2 * p + 1))
    for dy, dx, _ in picked:
        counts[dy + p, dx + p] += 1
    expected = n / counts.size
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 124.8  # chi-square, 80 degrees of freedom, p = 0.001
    assert counts.min() > 0 and counts[p, p] > 0  # every offset, the identity included
    assert (0, 0, False) in picked
    flips = np.mean([m for _, _, m in picked])
    assert abs(flips - 0.5) < 4 * math.sqrt(0.25 / n)
    # zero padding: moved-in pixels are exactly 0 (the image has none of its own)
    assert (out == 0).any() and not (img == 0).any()


def test_pad_crop_is_seeded_and_zero_padding_is_identity_or_mirror() -> None:
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    aug = Augment(AugmentConfig(crop="pad", crop_padding=2))
    assert torch.equal(aug(x, generator=gen(5)), aug(x, generator=gen(5)))
    still = Augment(AugmentConfig(crop="pad", crop_padding=0, jitter_prob=0.0,
                                  grayscale_prob=0.0))(x, generator=gen(6))
    xf = to_float(x)
    assert all(torch.equal(o, a) or torch.equal(o, a.flip(-1)) for o, a in zip(still, xf))
    with pytest.raises(Exception, match="crop=pad"):
        Augment(AugmentConfig(crop="pad"), size=(16, 16))(x)
