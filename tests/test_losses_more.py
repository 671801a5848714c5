"""AdvCL / RoCL / BYOL / Tikhonov losses vs independent float64 loops (numpy / math), the golden
values of acl_family.md §8, and finite differences for the input-gradient penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.losses import (
    advcl_loss,
    byol_loss,
    byol_loss_per_sample,
    input_gradient_penalty,
    nt_xent,
    pseudo_label_ce,
    rocl_loss,
    rocl_nt_xent,
    supcon_loss,
    tikhonov_penalty,
)


def golden_inputs() -> list[np.ndarray]:
    """acl_family.md §8: zi, zj, zo, zi_adv, zj_adv = round(N(0, 1) [4, 8], 3), seed 0."""
    rng = np.random.default_rng(0)
    return [np.round(rng.standard_normal((4, 8)), 3) for _ in range(5)]


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


# ----------------------------------------------------------------------------- references
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


def ref_byol(p: np.ndarray, z: np.ndarray) -> float:
    b2 = len(p)
    total = 0.0
    for i in range(b2):
        a, c = p[i], z[i ^ 1]
        total += float(np.sum((a / np.linalg.norm(a) - c / np.linalg.norm(c)) ** 2))
    return total / (b2 // 2)


def ref_ce(logits: np.ndarray, y: np.ndarray) -> float:
    vals = []
    for row, k in zip(logits, y):
        if k < 0:
            continue
        m = max(row)
        vals.append(m + math.log(sum(math.exp(v - m) for v in row)) - row[k])
    return sum(vals) / len(vals) if vals else 0.0


# ----------------------------------------------------------------------------- AdvCL
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


# ----------------------------------------------------------------------------- RoCL
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


# ----------------------------------------------------------------------------- BYOL
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


# ----------------------------------------------------------------------------- Tikhonov
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


def test_new_losses_stay_fp32_under_bf16_autocast():
    rng = np.random.default_rng(7)
    vs = [torch.tensor(rng.standard_normal((4, 8)), dtype=torch.float32) for _ in range(4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = [v.bfloat16() for v in vs]
        out = [supcon_loss(vb), rocl_nt_xent(vb[:3]), byol_loss(torch.cat(vb[:2]),
                                                                 torch.cat(vb[2:]))]
    assert all(o.dtype == torch.float32 and torch.isfinite(o) for o in out)
