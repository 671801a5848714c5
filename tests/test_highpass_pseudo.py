"""AdvCL's building blocks: the FFT high-pass view (checked in Fourier space) and the FAISS
k-means pseudo-labels (deterministic under a seed, right cluster counts, capped counts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.data import high_pass
from rcs.data.frequency import low_frequency_mask
from rcs.methods.pseudo_labels import (
    PseudoHeads,
    effective_counts,
    encoder_features,
    kmeans_labels,
    pseudo_labels,
)


def centred_spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))


@pytest.mark.parametrize("size, radius", [(32, 8.0), (32, 3.5), (16, 5.0), (15, 4.0)])
def test_high_pass_removes_exactly_the_disc(size, radius):
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    y = high_pass(x, radius)
    assert y.dtype == torch.float64 and y.shape == x.shape
    X, Y = centred_spectrum(x), centred_spectrum(y)
    # the disc, computed here independently with loops over the centred frequency grid
    c = size // 2
    inside = torch.tensor([[math.hypot(i - c, j - c) < radius for j in range(size)]
                           for i in range(size)])
    assert torch.equal(inside, low_frequency_mask(size, size, radius).cpu())
    scale = X.abs().max().item()
    assert Y[..., inside].abs().max().item() < 1e-12 * scale           # removed
    assert torch.allclose(Y[..., ~inside], X[..., ~inside], atol=1e-12 * scale)  # kept as is
    assert inside.sum() > 0 and (~inside).sum() > 0


def test_high_pass_edge_cases_and_fp32():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(high_pass(x.double(), 0.0), x.double(), atol=1e-12)  # nothing removed
    assert high_pass(x.double(), 100.0).abs().max() < 1e-12                   # everything
    y = high_pass(x, 8.0)
    assert y.dtype == torch.float32
    assert abs(float(y.mean())) < 1e-5 and float(y.min()) < 0  # DC removed, no clamping
    with pytest.raises(TypeError):
        high_pass((x * 255).to(torch.uint8), 8.0)
    # radius 1 removes exactly the DC term: the mean image of each channel
    dc = high_pass(x.double(), 1.0)
    assert torch.allclose(dc, x.double() - x.double().mean(dim=(-2, -1), keepdim=True),
                          atol=1e-12)


def blobs(n_per: int = 40, k: int = 4, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 5
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + 0.1 * rng.standard_normal((len(y), d))).astype(np.float32), y


def test_kmeans_labels_deterministic_and_counts():
    x, y = blobs()
    counts = [2, 4, 10, 50, 160]
    a = pseudo_labels(x, counts, seed=3, niter=10)
    b = pseudo_labels(x.copy(), counts, seed=3, niter=10)
    assert a.dtype == np.int64 and a.shape == (len(counts), len(x))
    assert np.array_equal(a, b)                                     # same seed -> same labels
    for row, k in zip(a, counts):
        assert row.min() == 0 and row.max() == k - 1
        assert len(np.unique(row)) == k                              # every cluster is used
    # the 4 well separated blobs are recovered at k = 4 (up to renaming)
    pairs = {(int(p), int(t)) for p, t in zip(a[1], y)}
    assert len(pairs) == 4
    assert not np.array_equal(pseudo_labels(x, [10], seed=4, niter=10)[0], a[2])  # seed matters


def test_kmeans_rejects_too_many_clusters_and_counts_are_capped():
    x, _ = blobs(n_per=5)
    with pytest.raises(ValueError):
        kmeans_labels(x, 21)
    with pytest.warns(UserWarning, match="capped at the dataset size 20"):
        assert effective_counts([2, 10, 50, 100, 500], 20) == [2, 10, 20, 20, 20]
    assert effective_counts([2, 10], 20, warn=False) == [2, 10]


def test_features_from_model_are_deterministic_and_leave_the_model_alone():
    from rcs.config import ModelConfig
    from rcs.data import ImageDataset
    from rcs.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, blocks=[1], head_dim=8,
                                    bn_names=["normal", "pgd", "pgd_ce"])).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    imgs = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    ds = ImageDataset(imgs, np.zeros(40, dtype=np.int64))
    f1 = encoder_features(model, ds, "normal", torch.device("cpu"), batch_size=16)
    f2 = encoder_features(model, ds, "normal", torch.device("cpu"), batch_size=7)
    assert f1.shape == (40, model.feature_dim) and np.allclose(f1, f2, atol=1e-6)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    labels = pseudo_labels(f1, [2, 5], seed=0)
    assert np.array_equal(labels, pseudo_labels(f2, [2, 5], seed=0))
    heads = PseudoHeads(model.feature_dim, [2, 5])
    out = heads(torch.from_numpy(f1))
    assert [o.shape for o in out] == [(40, 2), (40, 5)]
