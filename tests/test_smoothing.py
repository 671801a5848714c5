"""Randomized-smoothing certification (Cohen et al. 2019) against closed forms: the
Clopper-Pearson bound against a binomial-tail root and p = α^(1/n) at k = n, and CERTIFY on a
linear classifier, whose smoothed version's certified radius is the distance to its
hyperplane."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom
from torch import nn

from rcs.config.schema import EvalConfig
from rcs.data import ImageDataset
from rcs.evaluate import certified_accuracy, certify, evaluate, lower_confidence_bound


@pytest.mark.parametrize("k,n,alpha", [(7, 10, 0.05), (480, 500, 0.001), (51, 100, 0.01)])
def test_clopper_pearson_lower_bound_is_the_binomial_tail_root(k, n, alpha):
    got = lower_confidence_bound(k, n, alpha)
    lo, hi = 0.0, 1.0  # P(Bin(n, p) >= k) increases with p: bisect for the value alpha
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binom.sf(k - 1, n, mid) < alpha else (lo, mid)
    assert got == pytest.approx(lo, abs=1e-9)


def test_clopper_pearson_edge_cases():
    assert lower_confidence_bound(20, 20, 0.001) == pytest.approx(0.001 ** (1 / 20), rel=1e-12)
    assert lower_confidence_bound(0, 20, 0.001) == 0.0
    with pytest.raises(ValueError):
        lower_confidence_bound(21, 20, 0.001)


def linear_world(seed: int = 0):
    """A 2-class linear classifier on 3x2x2 images and images at known distances to it."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=12)
    w /= np.linalg.norm(w)
    b = -float(w @ np.full(12, 0.5))  # the hyperplane passes through the grey image
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(np.stack([np.zeros(12), w])))
        model[1].bias.copy_(torch.tensor([0.0, b]))
    signed = np.array([0.05, -0.12, 0.2, -0.3, 0.45, -0.6, 0.02, 0.35])  # target distances
    x = 0.5 + signed[:, None] * w[None, :]  # flat in the model's (C, H, W) order
    flat = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    xf = flat.astype(np.float64) / 255  # the images actually evaluated
    dist = xf @ w + b  # signed distance (||w|| = 1)
    nhwc = np.ascontiguousarray(flat.reshape(-1, 3, 2, 2).transpose(0, 2, 3, 1))
    return model, nhwc, xf, dist


def test_certify_on_a_linear_classifier_recovers_the_distance_to_the_hyperplane():
    model, _, xf, dist = linear_world()
    sigma, n = 0.25, 20000
    for i, d in enumerate(dist):
        x = torch.from_numpy(xf[i].reshape(3, 2, 2).copy())
        gen = torch.Generator().manual_seed(i)
        pred, radius, p_low = certify(model, x, sigma, n0=100, n=n, alpha=0.001, batch=n,
                                      num_classes=2, generator=gen)
        p_true = 0.5 * (1 + math.erf(abs(d) / sigma / math.sqrt(2)))  # Φ(|d| / σ)
        if abs(d) < 0.03:  # too close to the boundary for the bound to clear 1/2
            assert pred == -1 or radius <= abs(d) + 1e-9
            continue
        assert pred == int(d > 0)
        assert p_low <= p_true + 1e-12  # a lower bound (holds w.p. >= 1 - α; seeds fixed)
        assert radius <= abs(d) + 1e-9
        assert radius == pytest.approx(abs(d), abs=0.03)  # n = 20000: close to the truth


def test_certified_accuracy_counts_correct_predictions_beyond_each_radius():
    model, nhwc, xf, dist = linear_world()
    labels = (dist > 0).astype(np.int64)
    labels[3] = 1 - labels[3]  # one wrong label: never certified-correct
    ds = ImageDataset(nhwc, labels, name="lin")
    radii = [0.0, 0.1, 0.25, 0.4, 0.5]
    res = certified_accuracy(model.float(), ds, 0.25, 100, 20000, 0.001, radii, batch=20000,
                             seed=3)
    d = np.abs(dist)
    ok = (labels == (dist > 0)) & (d > 0.03)
    want = {f"{r:g}": float(np.mean(ok & (d >= r))) for r in radii}
    assert res["certified_accuracy"] == want
    assert res["accuracy"] == want["0"] and res["n"] == 8 and res["n_samples"] == 20000
    assert all(r <= di + 1e-6 for r, di in zip(res["radius"], d))


def test_evaluate_reports_smoothing_and_the_config_validates():
    model, nhwc, xf, dist = linear_world()
    ds = ImageDataset(nhwc, (dist > 0).astype(np.int64), name="lin")
    cfg = EvalConfig(attacks=["smoothing"], smoothing_n0=20, smoothing_n=500,
                     smoothing_radii=[0.0, 0.25], smoothing_n_ex=4, smoothing_batch=250)
    cfg.validate()
    res = evaluate(model.float(), ds, cfg, log=lambda s: None)
    sm = res["smoothing"]
    assert sm["n"] == 4 and set(sm["certified_accuracy"]) == {"0", "0.25"}
    assert sm["certified_accuracy"]["0.25"] <= sm["certified_accuracy"]["0"]
    with pytest.raises(Exception, match="smoothing_alpha"):
        EvalConfig(smoothing_alpha=1.5).validate()


def test_slf_noise_sigma_adds_gaussian_noise_to_the_training_images():
    from rcs.config import load_config
    from rcs.data.augment import crop_flip
    from rcs.finetune.linear import linear_step
    from rcs.models import Classifier

    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x.flatten(1)[:, :4]

    clf = Classifier(Recorder(), nn.Linear(4, 2))
    x = torch.rand(64, 3, 16, 16)
    y = torch.zeros(64, dtype=torch.long)
    for sigma in (0.0, 0.5):
        cfg = load_config(None, [f"finetune.noise_sigma={sigma}"])
        linear_step(clf, cfg, adversarial=False)(x, y, torch.Generator().manual_seed(3))
        base = crop_flip(x, cfg.finetune.padding, generator=torch.Generator().manual_seed(3))
        diff = seen[-1] - base
        if sigma == 0:
            assert torch.equal(diff, torch.zeros_like(diff))
        else:  # N(0, σ²) per pixel, not clipped: mean 0, std σ
            assert abs(float(diff.mean())) < 0.01 and float(diff.std()) == pytest.approx(0.5,
                                                                                      rel=0.02)
