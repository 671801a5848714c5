"""The BYOL loss vs an independent float64 loop; the target is not differentiated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcs.losses import (
    byol_loss,
    byol_loss_per_sample,
)
from tests.conftest import t64


def ref_byol(p: np.ndarray, z: np.ndarray) -> float:
    b2 = len(p)
    total = 0.0
    for i in range(b2):
        a, c = p[i], z[i ^ 1]
        total += float(np.sum((a / np.linalg.norm(a) - c / np.linalg.norm(c)) ** 2))
    return total / (b2 // 2)


def test_byol_loss_loops_and_target_not_differentiated():
    rng = np.random.default_rng(5)
    p, z = rng.standard_normal((8, 6)), rng.standard_normal((8, 6))
    got = byol_loss(t64(p), t64(z)).item()
    assert got == pytest.approx(ref_byol(p, z), rel=1e-12)
    rows = byol_loss_per_sample(t64(p), t64(z)).numpy()
    cos = [float(p[i] @ z[i ^ 1] / np.linalg.norm(p[i]) / np.linalg.norm(z[i ^ 1]))
           for i in range(8)]
    assert np.allclose(rows, 2 - 2 * np.array(cos), atol=1e-12)
    zt = t64(z).requires_grad_()
    byol_loss(t64(p).requires_grad_(), zt).backward()
    assert zt.grad is None or torch.count_nonzero(zt.grad) == 0
    assert byol_loss(t64(p), t64(p)[torch.arange(8) ^ 1]).item() == pytest.approx(0, abs=1e-12)
