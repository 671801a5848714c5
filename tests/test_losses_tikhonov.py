"""The Tikhonov penalty: its formula, the input-gradient penalty against finite differences,
and its parameter gradient by double back-propagation against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcs.losses import (
    input_gradient_penalty,
    nt_xent,
    tikhonov_penalty,
)
from tests.conftest import t64


def test_tikhonov_penalty_formula_pairs():
    """(λ/2) Σ_k (||g_{2k-1}||² + ||g_{2k}||²)/2 with explicit loops over image pairs."""
    rng = np.random.default_rng(6)
    g = rng.standard_normal((6, 3, 2, 2))  # 3 images x 2 views, interleaved
    lam = 10.0
    want = (lam / 2) * sum((np.sum(g[2 * k] ** 2) + np.sum(g[2 * k + 1] ** 2)) / 2
                           for k in range(3))
    assert tikhonov_penalty([t64(g)], lam).item() == pytest.approx(want, rel=1e-12)
    assert tikhonov_penalty([t64(g[:2]), None, t64(g[2:])], lam).item() == pytest.approx(
        want, rel=1e-12)


def _tiny_model():
    from rcs.config import ModelConfig
    from rcs.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(width=4, blocks=[1], head="acl3", head_dim=8, bn_names=["normal"],
                      normalize="none")
    return build_model(cfg).double().eval()


def test_input_gradient_penalty_equals_finite_differences():
    """R = (λ/4) Σ ||∇_x L||² with ∇ from central differences of L over every input pixel."""
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    v = torch.rand(4, 3, 6, 6, generator=g, dtype=torch.float64)  # 2 images x 2 views

    def loss(x: torch.Tensor) -> torch.Tensor:
        return nt_xent(model(x, "normal"), 0.5)

    lam = 1.0
    x = v.clone().requires_grad_()
    r = input_gradient_penalty(loss(x), [x], lam).item()
    h = 1e-5
    flat = v.reshape(-1)
    fd = torch.empty_like(flat)
    with torch.no_grad():
        for j in range(flat.numel()):
            e = torch.zeros_like(flat)
            e[j] = h
            fd[j] = (loss((flat + e).view_as(v)) - loss((flat - e).view_as(v))) / (2 * h)
    assert r == pytest.approx(lam / 4 * float((fd ** 2).sum()), rel=1e-6)
    assert r > 0


def test_penalty_parameter_gradient_by_double_backprop_matches_finite_differences():
    """d R / d θ (double back-propagation) vs central differences of R in a few weights."""
    model = _tiny_model()
    v = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def penalty() -> torch.Tensor:
        x = v.clone().requires_grad_()
        return input_gradient_penalty(nt_xent(model(x, "normal"), 0.5), [x], 10.0)

    w = model.head.fc1.weight
    (grad,) = torch.autograd.grad(penalty(), [w])
    h = 1e-6
    for idx in [(0, 0), (1, 2), (3, 3)]:
        with torch.no_grad():
            w[idx] += h
        up = penalty().item()
        with torch.no_grad():
            w[idx] -= 2 * h
        down = penalty().item()
        with torch.no_grad():
            w[idx] += h
        assert grad[idx].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-10)
