"""RoCL's loss vs an independent float64 loop and the golden values of PUBLISHED_METHODS.md A8; its
key side is detached."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.losses import (
    rocl_loss,
    rocl_nt_xent,
)
from tests.conftest import golden_inputs, t64


def ref_rocl(views: list[np.ndarray], t: float) -> float:
    """RoCL NT_xent (loss.py) with its 1e-8 terms, loops over anchors and positives."""
    zn = [v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-8) for v in views]
    z = np.concatenate(zn)
    nv, n = len(views), len(views[0])
    m = nv * n
    total = 0.0
    for i in range(m):
        e = [math.exp(float(z[i] @ z[k]) / t) if k != i else 0.0 for k in range(m)]
        den = sum(e) + 1e-8
        for j in range(m):
            if j != i and j % n == i % n:
                total += -math.log(e[j] / den + 1e-8)
    return total / m


def test_rocl_golden_and_loops():
    zi, zj, _, zia, _ = golden_inputs()
    rep = rocl_nt_xent([t64(zi), t64(zj), t64(zia)], 0.5).item()
    two = rocl_nt_xent([t64(zia), t64(zj)], 0.5).item()
    assert rep == pytest.approx(5.2596430909, abs=1e-9)
    assert two == pytest.approx(2.6327158351, abs=1e-9)
    assert rep == pytest.approx(ref_rocl([zi, zj, zia], 0.5), rel=1e-12)
    assert two == pytest.approx(ref_rocl([zia, zj], 0.5), rel=1e-12)
    full = rocl_loss(t64(zi), t64(zj), t64(zia), 0.5, 256.0).item()
    assert full == pytest.approx(ref_rocl([zi, zj, zia], 0.5) + ref_rocl([zia, zj], 0.5) / 256,
                                 rel=1e-12)


def test_rocl_key_side_is_detached():
    """Gradient flows only through anchor rows: d/dz equals that of the loss with constant keys."""
    rng = np.random.default_rng(4)
    a, b = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal((3, 4)))
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    rocl_nt_xent([a1, b1], 0.5).backward()
    # reference: keys are fixed numbers; only the anchor's normalised row varies
    keys = torch.cat([a, b])
    keys = keys / (keys.norm(dim=1, keepdim=True) + 1e-8)

    def with_fixed_keys(x: torch.Tensor) -> torch.Tensor:
        z = x / (x.norm(dim=1, keepdim=True) + 1e-8)
        e = torch.exp(z @ keys.t() / 0.5) * (1 - torch.eye(6, dtype=torch.float64))
        p = e / (e.sum(1, keepdim=True) + 1e-8)
        idx = torch.arange(6)
        return -torch.log(p[idx, (idx + 3) % 6] + 1e-8).sum() / 6

    x = torch.cat([a, b]).requires_grad_()
    with_fixed_keys(x).backward()
    assert torch.allclose(torch.cat([a1.grad, b1.grad]), x.grad, atol=1e-12)
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    rocl_nt_xent([a2, b2], 0.5, detach_keys=False).backward()
    assert not torch.allclose(a2.grad, a1.grad)  # the published detach matters
