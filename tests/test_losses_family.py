"""The survey-family losses (CLAE, IFM, HCL, MoCHi, A-InfoNCE, AdCo / CaCo memory updates)
against float64 loops written from the papers' formulas, and hand-derived special cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.losses import (
    adco_loss,
    adco_memory_grad,
    ainfonce_rocl_loss,
    caco_loss,
    caco_memory_direction,
    caco_positive_index,
    clae_loss,
    hcl_loss,
    ifm_loss,
    memory_sgd_step,
    mochi_draw,
    mochi_hard_count,
    mochi_loss,
    nt_xent,
    rocl_nt_xent,
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def _loop_ntx(z: np.ndarray, t: float, eps: float = 0.0) -> float:
    """SimCLR NT-Xent (optionally IFM-shifted) of interleaved rows, one anchor at a time."""
    n, total = len(z), 0.0
    for i in range(n):
        j = i ^ 1
        num = math.exp((_cos(z[i], z[j]) - eps) / t)
        den = num + sum(math.exp((_cos(z[i], z[k]) + eps) / t)
                        for k in range(n) if k not in (i, j))
        total += -math.log(num / den)
    return total / n


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_clae_is_clean_plus_alpha_adversarial_pair_ntxent():
    z1, z2, za = _rand(5, 7, seed=1), _rand(5, 7, seed=2), _rand(5, 7, seed=3)

    def inter(a, b):
        return np.stack([a.numpy(), b.numpy()], 1).reshape(-1, 7)

    want = _loop_ntx(inter(z1, z2), 0.5) + 0.7 * _loop_ntx(inter(z1, za), 0.5)
    assert float(clae_loss(z1, z2, za, 0.5, alpha=0.7)) == pytest.approx(want, rel=1e-10)
    assert float(clae_loss(z1, z2, za, 0.5, alpha=0.0)) == pytest.approx(
        _loop_ntx(inter(z1, z2), 0.5), rel=1e-10)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_ifm_matches_the_shifted_similarity_loop(eps):
    z = _rand(8, 6, seed=4)
    clean, shifted = _loop_ntx(z.numpy(), 0.2), _loop_ntx(z.numpy(), 0.2, eps)
    got = float(ifm_loss(z, 0.2, epsilon=eps, alpha=0.5))
    assert got == pytest.approx((clean + 0.5 * shifted) / 1.5, rel=1e-10)
    if eps > 0:  # the perturbed problem is harder: its loss is larger
        assert shifted > clean
    assert float(ifm_loss(z, 0.2, epsilon=eps, alpha=0.0)) == pytest.approx(clean, rel=1e-10)


def _loop_hcl(z: np.ndarray, t: float, tau_plus: float, beta: float) -> float:
    """HCL (Robinson et al. 2021, eq. for the estimator) one anchor at a time."""
    n, total = len(z), 0.0
    for i in range(n):
        j = i ^ 1
        pos = math.exp(_cos(z[i], z[j]) / t)
        negs = [math.exp(_cos(z[i], z[k]) / t) for k in range(n) if k not in (i, j)]
        m = len(negs)
        imp = [x ** beta for x in negs]
        reweight = sum(w * x for w, x in zip(imp, negs)) / (sum(imp) / m)
        ng = max((-tau_plus * m * pos + reweight) / (1 - tau_plus), m * math.exp(-1 / t))
        total += -math.log(pos / (pos + ng))
    return total / n


@pytest.mark.parametrize("tau_plus,beta", [(0.0, 0.0), (0.1, 1.0), (0.3, 2.0), (0.5, 0.5)])
def test_hcl_matches_the_estimator_loop(tau_plus, beta):
    z = _rand(10, 5, seed=5)
    got = float(hcl_loss(z, 0.5, tau_plus, beta))
    assert got == pytest.approx(_loop_hcl(z.numpy(), 0.5, tau_plus, beta), rel=1e-10)
    if tau_plus == 0 and beta == 0:
        assert got == pytest.approx(float(nt_xent(z, 0.5)), rel=1e-12)


def test_hcl_clamp_binds_when_the_debiased_estimate_goes_negative():
    # identical pairs (cos 1), orthogonal images (cos 0): τ⁺ M e^2 > Σ_k w_k e^0 = M, so the
    # estimate is negative and is clamped to M e^{-1/t}
    z = torch.eye(4, dtype=torch.float64)[[0, 0, 1, 1, 2, 2]]
    got = float(hcl_loss(z, 0.5, tau_plus=0.9, beta=1.0))
    want = -math.log(math.exp(2.0) / (math.exp(2.0) + 4 * math.exp(-2.0)))
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(_loop_hcl(z.numpy(), 0.5, 0.9, 1.0), rel=1e-12)


def test_mochi_matches_a_per_anchor_loop_and_reduces_to_ntxent():
    z = _rand(12, 5, seed=7)
    n, hard = 12, mochi_hard_count(12, 4)
    assert hard == 4 and mochi_hard_count(12, 1024) == 10
    draw = mochi_draw(n, hard, s=3, s_prime=2, generator=torch.Generator().manual_seed(0),
                      device="cpu")
    assert float(draw.beta.max()) < 0.5
    got = float(mochi_loss(z, draw, 0.5, n_hard=4))
    zn = (z / z.norm(dim=1, keepdim=True)).numpy()
    total = 0.0
    for i in range(n):
        j = i ^ 1
        negs = [k for k in range(n) if k not in (i, j)]
        order = sorted(negs, key=lambda k: -zn[i] @ zn[k])[:hard]
        syn = []
        for m in range(3):
            a, b = order[int(draw.mix[i, m, 0])], order[int(draw.mix[i, m, 1])]
            al = float(draw.alpha[i, m])
            u = al * zn[a] + (1 - al) * zn[b]
            syn.append(u / np.linalg.norm(u))
        for m in range(2):
            c, be = order[int(draw.query[i, m])], float(draw.beta[i, m])
            u = be * zn[i] + (1 - be) * zn[c]
            syn.append(u / np.linalg.norm(u))
        num = math.exp(zn[i] @ zn[j] / 0.5)
        den = sum(math.exp(zn[i] @ zn[k] / 0.5) for k in range(n) if k != i)
        den += sum(math.exp(zn[i] @ u / 0.5) for u in syn)
        total += -math.log(num / den)
    assert got == pytest.approx(total / n, rel=1e-10)
    # no synthetic negatives: NT-Xent
    empty = mochi_draw(n, hard, 0, 0, torch.Generator().manual_seed(0))
    assert float(mochi_loss(z, empty, 0.5, 4)) == pytest.approx(float(nt_xent(z, 0.5)), rel=1e-12)
    # the synthetic points carry no gradient: perturbing a row that is only ever a mixed
    # (hard) negative changes the loss only through its real similarities
    zz = z.clone().requires_grad_(True)
    mochi_loss(zz, draw, 0.5, 4).backward()
    assert torch.isfinite(zz.grad).all()
    only_syn = draw.alpha.clone().fill_(0.5)
    fixed = type(draw)(draw.mix, only_syn, draw.query, draw.beta)
    a = zz.detach().clone().requires_grad_(True)
    mochi_loss(a, fixed, 0.5, 4).backward()
    b = zz.detach().clone().requires_grad_(True)
    nt = nt_xent(b, 0.5)
    nt.backward()
    assert not torch.allclose(a.grad, b.grad)  # the synthetic terms do change the gradient
    with pytest.raises(ValueError, match="positions"):
        mochi_loss(z, mochi_draw(n, 6, 2, 2, torch.Generator().manual_seed(1)), 0.5, 4)


def test_ainfonce_reduces_to_rocl_and_matches_a_weighted_loop():
    views = [_rand(4, 6, seed=s) for s in (8, 9, 10)]
    # ip with γ = 1/2, λ_a = 2 weights every pair 1: RoCL's NTX_3
    assert float(ainfonce_rocl_loss(views, 0.5, "ip", 0.5, 2.0)) == pytest.approx(
        float(rocl_nt_xent(views, 0.5)), rel=1e-12)
    z = torch.cat(views).numpy()
    z = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-8)
    n, m = 4, 12
    s = z @ z.T / 0.5

    def w(a, b, gamma=0.2, lam=1.0):
        if {a, b} == {0, 1}:
            return 1.0
        return lam * gamma if b == 2 else lam * (1 - gamma)

    ip = hn = 0.0
    for i in range(m):
        pos = [j for j in range(m) if j != i and j % n == i % n]
        negs = [k for k in range(m) if k != i and k not in pos]
        e_all = sum(math.exp(s[i, k]) for k in range(m) if k != i)
        pm = np.mean([math.exp(s[i, j]) for j in pos])
        ex = [math.exp(s[i, k]) for k in negs]
        imp = [x ** 1.0 for x in ex]
        rew = sum(a * b for a, b in zip(imp, ex)) / (sum(imp) / len(negs))
        ng = max((rew - 0.12 * len(negs) * pm) / 0.88, len(negs) * math.exp(-2.0))
        for j in pos:
            wij = w(i // n, j // n)
            ip += wij * -math.log(math.exp(s[i, j]) / (e_all + 1e-8) + 1e-8)
            hn += wij * -math.log(math.exp(s[i, j]) / (pm + ng))
    assert float(ainfonce_rocl_loss(views, 0.5, "ip")) == pytest.approx(ip / m, rel=1e-10)
    assert float(ainfonce_rocl_loss(views, 0.5, "iphn", tau_plus=0.12)) == pytest.approx(
        hn / m, rel=1e-10)
    # the keys are detached: only the anchor rows carry gradient (as RoCL)
    leaf = [v.clone().requires_grad_(True) for v in views]
    ainfonce_rocl_loss(leaf, 0.5, "iphn").backward()
    assert all(torch.isfinite(v.grad).all() for v in leaf)


def _adco_setup(seed=11):
    q, k, bank = _rand(5, 4, seed=seed), _rand(5, 4, seed=seed + 1), _rand(9, 4, seed=seed + 2)
    return q, k, 3.0 * bank


def test_adco_loss_and_memory_gradient_match_autograd():
    q, k, bank = _adco_setup()
    qn = (q / q.norm(dim=1, keepdim=True)).numpy()
    kn = (k / k.norm(dim=1, keepdim=True)).numpy()
    dn = (bank / bank.norm(dim=1, keepdim=True)).numpy()
    want = 0.0
    for i in range(5):
        logits = np.concatenate([kn @ qn[i], dn @ qn[i]]) / 0.12
        want += -(logits[i] - np.log(np.exp(logits).sum()))
    assert float(adco_loss(q, k, bank, 0.12)) == pytest.approx(want / 5, rel=1e-10)
    b = bank.clone().requires_grad_(True)
    # autograd through the bank (adco_loss detaches it: rebuild the same loss differentiably)
    bn = b / b.norm(dim=1, keepdim=True)
    logits = torch.cat([torch.from_numpy(qn @ kn.T), torch.from_numpy(qn) @ bn.t()], 1) / 0.02
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    (grad,) = torch.autograd.grad(loss, b)
    assert torch.allclose(adco_memory_grad(q, k, bank, 0.02), grad, atol=1e-12, rtol=1e-10)


def test_one_adco_memory_update_is_the_closed_form_gradient_ascent_step():
    q, k, bank = _adco_setup(seed=20)
    vel = _rand(9, 4, seed=30) * 0.1
    g = adco_memory_grad(q, k, bank, 0.02)
    b_new, v_new = bank.clone(), vel.clone()
    memory_sgd_step(b_new, v_new, g, lr=3.0, momentum=0.9, weight_decay=1e-4)
    v_want = 0.9 * vel - g + 1e-4 * bank
    assert torch.allclose(v_new, v_want, atol=1e-14)
    assert torch.allclose(b_new, bank - 3.0 * v_want, atol=1e-13)
    # with no momentum / decay the step is plain ascent: the memory loss increases
    b2, v2 = bank.clone(), torch.zeros_like(bank)
    memory_sgd_step(b2, v2, g, lr=0.05, momentum=0.0)
    assert float(adco_loss(q, k, b2, 0.02)) > float(adco_loss(q, k, bank, 0.02))


def test_caco_positive_memory_descends_and_negatives_ascend():
    q, k, bank = _adco_setup(seed=40)
    pos = caco_positive_index(k, bank)
    dn = bank / bank.norm(dim=1, keepdim=True)
    kn = k / k.norm(dim=1, keepdim=True)
    assert torch.equal(pos, (kn @ dn.t()).argmax(1))
    qn = q / q.norm(dim=1, keepdim=True)
    want = torch.nn.functional.cross_entropy(qn @ dn.t() / 0.08, pos)
    assert float(caco_loss(q, bank, pos, 0.08)) == pytest.approx(float(want), rel=1e-12)
    # U = (1/B) Σ_i σ_ij ∂l_i/∂b_j with σ = -1 on the positive entry: per-sample autograd
    u = torch.zeros_like(bank)
    for i in range(5):
        b = bank.clone().requires_grad_(True)
        bn = b / b.norm(dim=1, keepdim=True)
        li = torch.nn.functional.cross_entropy((qn[i:i + 1] @ bn.t()) / 0.08, pos[i:i + 1])
        (gi,) = torch.autograd.grad(li, b)
        sign = torch.ones(9, 1, dtype=torch.float64)
        sign[pos[i]] = -1.0
        u += sign * gi / 5
    assert torch.allclose(caco_memory_direction(q, bank, pos, 0.08), u, atol=1e-12, rtol=1e-10)
    # one memory step (no momentum) pulls every positive entry toward its queries
    b2, v2 = bank.clone(), torch.zeros_like(bank)
    memory_sgd_step(b2, v2, u, lr=0.05, momentum=0.0)
    d2 = b2 / b2.norm(dim=1, keepdim=True)
    for i in range(5):
        if int((pos == pos[i]).sum()) == 1:
            assert float(qn[i] @ d2[pos[i]]) > float(qn[i] @ dn[pos[i]])
