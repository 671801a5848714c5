"""Losses vs independent float64 formulas written with explicit loops (numpy / math)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.losses import (
    acl_loss,
    air_loss,
    air_terms,
    cross_entropy,
    dynacl_loss,
    dynacl_period,
    dynacl_strength,
    dynacl_weight,
    nt_xent,
    nt_xent_per_sample,
    rd_distance,
    rd_kl,
    rd_minmax_kl,
    trades_kl,
    trades_loss,
)

# ----------------------------------------------------------------------------- references


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def ref_ntxent_rows(F: np.ndarray, t: float, published: bool = False) -> list[float]:
    """Per-row NT-Xent: masked diagonal, or ACL's subtract-e^{1/t} form (published=True)."""
    n = len(F)
    out = []
    for i in range(n):
        if published:
            denom = sum(math.exp(_cos(F[i], F[k]) / t) for k in range(n)) - math.exp(1 / t)
        else:
            denom = sum(math.exp(_cos(F[i], F[k]) / t) for k in range(n) if k != i)
        out.append(-math.log(math.exp(_cos(F[i], F[i ^ 1]) / t) / denom))
    return out


def ref_ntxent(F: np.ndarray, t: float, published: bool = False) -> float:
    rows = ref_ntxent_rows(F, t, published)
    return sum(rows) / len(rows)


def _softmax(v: list[float]) -> list[float]:
    m = max(v)
    e = [math.exp(x - m) for x in v]
    s = sum(e)
    return [x / s for x in e]


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a)


def ref_air(zi, zj, zo, zia, zja, t, faithful):
    """AIR's SIR and AIR terms with loops (PUBLISHED_METHODS.md A3.2)."""
    zi, zj, zo, zia, zja = ([_unit(r) for r in a] for a in (zi, zj, zo, zia, zja))
    n = len(zi)

    def sm(a, b):
        return _softmax([float(np.dot(a[k], b[k])) / t for k in range(n)])

    p, q = sm(zi, zo), sm(zj, zo)
    ca_i, ca_j, ao_i, ao_j = sm(zia, zi), sm(zja, zj), sm(zia, zo), sm(zja, zo)
    P = [ao_i[k] * ca_i[k] for k in range(n)]
    Q = [ao_j[k] * ca_j[k] for k in range(n)]
    if faithful:
        sir = sum(q[k] * (math.log(q[k]) - p[k]) for k in range(n))
        air = sum(Q[k] * (math.log(Q[k]) - P[k]) for k in range(n))
    else:
        sir = sum(q[k] * (math.log(q[k]) - math.log(p[k])) for k in range(n))
        sp, sq = sum(P), sum(Q)
        air = sum(Q[k] / sq * (math.log(Q[k] / sq) - math.log(P[k] / sp)) for k in range(n))
    return sir, air


def ref_kl_rows(p_logits: np.ndarray, q_logits: np.ndarray) -> list[float]:
    """KL(softmax p_b || softmax q_b) per row."""
    out = []
    for a, b in zip(p_logits, q_logits):
        p, q = _softmax(list(a)), _softmax(list(b))
        out.append(sum(p[c] * (math.log(p[c]) - math.log(q[c])) for c in range(len(p))))
    return out


# ----------------------------------------------------------------------------- fixtures


def golden_inputs():
    rng = np.random.default_rng(0)
    zi, zj, zo, zia, zja = (np.round(rng.standard_normal((4, 8)), 3) for _ in range(5))
    F = np.empty((8, 8))
    F[0::2], F[1::2] = zi, zj
    Fa = np.empty((8, 8))
    Fa[0::2], Fa[1::2] = zia, zja
    return zi, zj, zo, zia, zja, F, Fa


def T(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------- NT-Xent


def test_golden_inputs_match_reference_doc():
    zi, zj, *_ = golden_inputs()
    assert np.allclose(zi[0], [0.126, -0.132, 0.64, 0.105, -0.536, 0.362, 1.304, 0.947])
    assert np.allclose(zj[0], [-0.159, 0.541, 0.215, 0.355, -0.654, -0.13, 0.784, 1.493])


def test_ntxent_golden_and_loops():
    *_, F, Fa = golden_inputs()
    assert nt_xent(T(F), 0.5).item() == pytest.approx(2.1030108221, abs=1e-9)
    assert nt_xent(T(Fa), 0.5).item() == pytest.approx(2.0469541631, abs=1e-9)
    assert ref_ntxent(F, 0.5) == pytest.approx(2.1030108221, abs=1e-9)
    rng = np.random.default_rng(1)
    for t in (0.1, 0.5, 1.0):
        Z = rng.standard_normal((6, 5))
        got = nt_xent_per_sample(T(Z), t).numpy()
        assert np.allclose(got, ref_ntxent_rows(Z, t), atol=1e-10)
        assert nt_xent(T(Z), t).item() == pytest.approx(ref_ntxent(Z, t), abs=1e-10)


def test_ntxent_matches_published_form_on_unit_vectors():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((8, 16))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    assert nt_xent(T(Z), 0.5).item() == pytest.approx(ref_ntxent(Z, 0.5, published=True),
                                                      abs=1e-9)


def test_ntxent_zero_row_masked_not_subtracted():
    """A zero row has self-similarity 0: masking is right, the published trick is not."""
    Z = np.random.default_rng(3).standard_normal((4, 3))
    Z[0] = 0.0
    got = nt_xent(T(Z), 0.5).item()
    assert math.isfinite(got)
    assert got == pytest.approx(ref_ntxent(Z, 0.5), abs=1e-10)
    # the published denominator of the zero row is off by e^{1/t} - 1 (here it even goes < 0)
    den_pub = sum(math.exp(_cos(Z[0], Z[k]) / 0.5) for k in range(4)) - math.exp(2.0)
    den_mask = sum(math.exp(_cos(Z[0], Z[k]) / 0.5) for k in range(1, 4))
    assert den_pub == pytest.approx(den_mask + 1 - math.exp(2.0))


def test_ntxent_positive_is_xor_partner():
    """Swapping rows inside a pair keeps the loss; swapping across pairs changes it."""
    Z = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    base = nt_xent(Z).item()
    assert nt_xent(Z[[1, 0, 2, 3, 4, 5]]).item() == pytest.approx(base, abs=1e-12)
    assert abs(nt_xent(Z[[2, 1, 0, 3, 4, 5]]).item() - base) > 1e-6


def test_ntxent_rejects_odd_rows():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(5, 3))


def test_ntxent_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(6, 16)
    x = torch.randn(8, 6, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = lin(x)
        assert z.dtype == torch.bfloat16
        loss = nt_xent(z, 0.5)
        per = nt_xent_per_sample(z, 0.5)
    assert loss.dtype == torch.float32 and per.dtype == torch.float32
    ref = ref_ntxent(z.detach().double().numpy(), 0.5)  # same bf16 values, fp64 maths
    assert loss.item() == pytest.approx(ref, abs=2e-5)
    loss.backward()
    assert torch.isfinite(lin.weight.grad).all()


# ----------------------------------------------------------------------------- ACL / DynACL


def test_acl_loss_loops():
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    want = (ref_ntxent(A, 0.5) + ref_ntxent(B, 0.5)) / 2
    assert acl_loss(T(A), T(B), 0.5).item() == pytest.approx(want, abs=1e-10)
    want_w = (0.3 * ref_ntxent(A, 0.2) + 1.7 * ref_ntxent(B, 0.2)) / 2
    assert acl_loss(T(A), T(B), 0.2, 0.3, 1.7).item() == pytest.approx(want_w, abs=1e-10)


def test_dynacl_loss_equals_dynacl_repo_form():
    """((1-w)Ln + (1+w)La)/2 == [(2-w_adv)Ln + w_adv La]/2 with w_adv = 1 + w."""
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    w = dynacl_weight(0.35)
    w_adv = 1 + w
    want = ((2 - w_adv) * ref_ntxent(A, 0.5) + w_adv * ref_ntxent(B, 0.5)) / 2
    assert dynacl_loss(T(A), T(B), 0.5, w).item() == pytest.approx(want, abs=1e-10)


@pytest.mark.parametrize("epoch,total,s", [
    (1, 1000, 1.0), (50, 1000, 1.0), (51, 1000, 0.95), (100, 1000, 0.95), (101, 1000, 0.90),
    (951, 1000, 0.05), (1000, 1000, 0.05),
    (5, 100, 1.0), (6, 100, 0.95), (100, 100, 0.05),
    (2, 30, 1.0), (3, 30, 0.95), (30, 30, 0.05),     # period 1.5 epochs
    (1, 10, 1.0), (2, 10, 0.95), (10, 10, 0.55),      # period clamped to 1 epoch
])
def test_dynacl_strength_hand_values(epoch, total, s):
    assert dynacl_strength(epoch, total) == pytest.approx(s, abs=1e-12)


def test_dynacl_period_and_weight():
    assert dynacl_period(1000) == 50 and dynacl_period(100) == 5 and dynacl_period(10) == 1
    assert dynacl_weight(1.0) == 0.0
    assert dynacl_weight(0.05) == pytest.approx(0.95 * 2 / 3)  # w_adv = 1.6333 in DynACL
    with pytest.raises(ValueError):
        dynacl_strength(0, 100)


# ----------------------------------------------------------------------------- AIR


def test_air_golden_faithful():
    zi, zj, zo, zia, zja, F, Fa = golden_inputs()
    t = air_terms(T(F), T(Fa), T(zo), 0.5, "faithful")
    assert t["nat"].item() == pytest.approx(2.1030108221, abs=1e-9)
    assert t["adv"].item() == pytest.approx(2.0469541631, abs=1e-9)
    assert t["sir"].item() == pytest.approx(-1.6359376862, abs=1e-9)
    assert t["air"].item() == pytest.approx(-0.6080367938, abs=1e-9)
    sir, air = ref_air(zi, zj, zo, zia, zja, 0.5, faithful=True)
    assert sir == pytest.approx(-1.6359376862, abs=1e-9)
    assert air == pytest.approx(-0.6080367938, abs=1e-9)


@pytest.mark.parametrize("variant", ["faithful", "corrected"])
def test_air_loss_vs_loops(variant):
    rng = np.random.default_rng(6)
    n, d = 5, 4
    zi, zj, zo, zia, zja = (rng.standard_normal((n, d)) for _ in range(5))
    F = np.empty((2 * n, d))
    F[0::2], F[1::2] = zi, zj
    Fa = np.empty((2 * n, d))
    Fa[0::2], Fa[1::2] = zia, zja
    sir, air = ref_air(zi, zj, zo, zia, zja, 0.5, faithful=(variant == "faithful"))
    w, l1, l2 = 0.4, 0.5, 0.7
    want = (1 - w) * ref_ntxent(F, 0.5) + (1 + w) * ref_ntxent(Fa, 0.5) + l1 * sir + l2 * air
    got = air_loss(T(F), T(Fa), T(zo), 0.5, w=w, lambda1=l1, lambda2=l2, variant=variant)
    assert got.item() == pytest.approx(want, abs=1e-9)
    if variant == "corrected":
        assert sir >= -1e-12 and air >= -1e-12  # true KLs are non-negative


def test_air_bad_variant_and_shapes():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError):
        air_terms(z, z, z[:2], variant="paper")
    with pytest.raises(ValueError):
        air_terms(z, z, z)


def test_air_fp32_under_autocast_finite():
    g = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(5, 8)
    xn, xa, xo = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g), \
        torch.randn(8, 5, generator=g)
    for variant in ("faithful", "corrected"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            zn, za, zo = lin(xn), lin(xa), lin(xo)
            got = air_loss(zn, za, zo, variant=variant, w=0.2)
        assert got.dtype == torch.float32 and torch.isfinite(got)
        want = air_loss(zn.double(), za.double(), zo.double(), variant=variant, w=0.2)
        assert got.item() == pytest.approx(want.item(), abs=1e-4)


# ----------------------------------------------------------------------------- TRADES / CE


def test_trades_kl_and_loss_loops():
    rng = np.random.default_rng(7)
    nat, adv = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 2, 3])
    kl_rows = ref_kl_rows(nat, adv)
    assert trades_kl(T(adv), T(nat)).item() == pytest.approx(sum(kl_rows) / 5, abs=1e-10)
    ce = sum(-math.log(_softmax(list(nat[b]))[y[b]]) for b in range(5)) / 5
    got = trades_loss(T(nat), T(adv), torch.tensor(y), beta=6.0)
    assert got.item() == pytest.approx(ce + 6.0 * sum(kl_rows) / 5, abs=1e-10)
    assert cross_entropy(T(nat), torch.tensor(y)).item() == pytest.approx(ce, abs=1e-10)


def test_trades_kl_clean_target_not_detached():
    nat = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(3, 4, dtype=torch.float64)
    trades_kl(adv, nat).backward()
    assert nat.grad is not None and nat.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- RD


def test_rd_kl_loops():
    rng = np.random.default_rng(8)
    zn, za = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    want = sum(ref_kl_rows(zn, za)) / 4
    assert rd_kl(T(zn), T(za)).item() == pytest.approx(want, abs=1e-10)
    assert rd_distance(T(zn), T(za), "kl").item() == pytest.approx(want, abs=1e-10)
    assert rd_kl(T(zn), T(zn)).item() == pytest.approx(0.0, abs=1e-12)


def ref_minmax_kl(zn: np.ndarray, za: np.ndarray) -> float:
    tot, cnt = 0.0, 0
    for rn, ra in zip(zn, za):
        for jn, ja in zip(rn, ra):
            p = (jn - min(rn)) / (max(rn) - min(rn)) + 1e-8
            q = (ja - min(ra)) / (max(ra) - min(ra)) + 1e-8
            tot += q * (math.log(q) - math.log(p))
            cnt += 1
    return tot / cnt


def test_rd_minmax_kl_loops_and_no_mutation():
    rng = np.random.default_rng(9)
    zn, za = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))
    tn, ta = T(zn), T(za)
    cn, ca = tn.clone(), ta.clone()
    got = rd_minmax_kl(tn, ta).item()
    assert got == pytest.approx(ref_minmax_kl(zn, za), abs=1e-10)
    assert torch.equal(tn, cn) and torch.equal(ta, ca)
    assert rd_distance(tn, ta, "minmax_kl").item() == pytest.approx(got, abs=1e-14)
    # ordering: KL(adv || nat), not symmetric
    assert abs(rd_minmax_kl(ta, tn).item() - got) > 1e-6


def test_rd_minmax_constant_row_finite_and_bad_name():
    z = torch.zeros(2, 4)
    assert torch.isfinite(rd_minmax_kl(z, torch.randn(2, 4)))
    with pytest.raises(ValueError):
        rd_distance(z, z, "js")


def test_new_losses_stay_fp32_under_bf16_autocast():
    from rcs.losses import byol_loss, rocl_nt_xent, supcon_loss

    rng = np.random.default_rng(7)
    vs = [torch.tensor(rng.standard_normal((4, 8)), dtype=torch.float32) for _ in range(4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = [v.bfloat16() for v in vs]
        out = [supcon_loss(vb), rocl_nt_xent(vb[:3]), byol_loss(torch.cat(vb[:2]),
                                                                 torch.cat(vb[2:]))]
    assert all(o.dtype == torch.float32 and torch.isfinite(o) for o in out)
