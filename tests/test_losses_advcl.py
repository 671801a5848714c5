"""AdvCL's losses (SupCon over the views, pseudo-label CE) vs independent float64 loops and
the golden values of PUBLISHED_METHODS.md A8."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.losses import (
    advcl_loss,
    nt_xent,
    pseudo_label_ce,
    supcon_loss,
)
from tests.conftest import golden_inputs, t64


def ref_supcon(views: list[np.ndarray], t: float, base: float) -> float:
    """AdvCL SupConLoss(labels=None) with explicit loops over anchors and positives."""
    z = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in views]
    nv, b = len(z), len(z[0])
    rows = [(a, i) for a in range(nv) for i in range(b)]
    total = 0.0
    for a, i in rows:
        s = {(c, k): float(z[a][i] @ z[c][k]) / t for c, k in rows if (c, k) != (a, i)}
        log_den = math.log(sum(math.exp(v) for v in s.values()))
        pos = [s[(c, i)] - log_den for c in range(nv) if c != a]
        total += -(t / base) * sum(pos) / len(pos)
    return total / len(rows)


def ref_ce(logits: np.ndarray, y: np.ndarray) -> float:
    vals = []
    for row, k in zip(logits, y):
        if k < 0:
            continue
        m = max(row)
        vals.append(m + math.log(sum(math.exp(v - m) for v in row)) - row[k])
    return sum(vals) / len(vals) if vals else 0.0


def test_supcon_golden_and_loops():
    zi, zj, zo, zia, _ = golden_inputs()
    views = [zia, zi, zj, zo]
    got = supcon_loss([t64(v) for v in views], 0.5, 0.07).item()
    assert got == pytest.approx(21.4573766094, abs=1e-9)
    assert got == pytest.approx(ref_supcon(views, 0.5, 0.07), rel=1e-12)
    rng = np.random.default_rng(3)
    views = [rng.standard_normal((5, 6)) for _ in range(3)]
    got = supcon_loss(t64(np.stack(views, 1)), 0.3, 0.1).item()  # [B, V, d] form
    assert got == pytest.approx(ref_supcon(views, 0.3, 0.1), rel=1e-12)


def test_supcon_two_views_is_scaled_ntxent():
    """With 2 views, SupCon = (T/base) x NT-Xent (one positive, same denominator)."""
    rng = np.random.default_rng(1)
    a, b = t64(rng.standard_normal((6, 5))), t64(rng.standard_normal((6, 5)))
    inter = torch.stack([a, b], 1).flatten(0, 1)
    assert supcon_loss([a, b], 0.5, 0.07).item() == pytest.approx(
        (0.5 / 0.07) * nt_xent(inter, 0.5).item(), rel=1e-12)


def test_pseudo_label_ce_loops_and_ignore_index():
    rng = np.random.default_rng(2)
    logits = [rng.standard_normal((6, k)) for k in (2, 5, 3)]
    y = np.stack([rng.integers(0, k, 6) for k in (2, 5, 3)])
    y[1, [0, 3]] = -1
    y[2, :] = -1  # a granularity without any label in the batch counts 0
    got = pseudo_label_ce([t64(lg) for lg in logits], torch.tensor(y)).item()
    want = sum(ref_ce(lg, yy) for lg, yy in zip(logits, y)) / 3
    assert got == pytest.approx(want, rel=1e-12)
    total = advcl_loss([t64(v) for v in golden_inputs()[:4]], [t64(lg) for lg in logits],
                       torch.tensor(y), ce_weight=0.2).item()
    assert total == pytest.approx(ref_supcon(golden_inputs()[:4], 0.5, 0.07) + 0.2 * want,
                                  rel=1e-12)
