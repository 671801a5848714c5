"""Per-sample head gradients (torch.func) and the first-order RCS gain, against plain autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rcs.losses import acl_loss, air_loss, nt_xent_per_sample, rd_kl
from rcs.selection.per_sample import (
    HeadFn,
    Objective,
    linear_param_names,
    loss_of,
    mean_grad,
    per_sample_grads,
)
from rcs.selection.validation import rd_grad, rd_loss

B, D = 5, 6


def _head(seed: int = 0) -> nn.Module:
    """Tiny ACL-like head in float64, BN with non-trivial running stats and affines."""
    torch.manual_seed(seed)
    h = nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(),
                      nn.Linear(8, 7, bias=False), nn.BatchNorm1d(7))
    for m in h.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return h.double().eval()


def _feats(v: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, v, D, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _loop_acl_grads(h: nn.Module, feats: torch.Tensor, names: list[str]) -> torch.Tensor:
    """Independent reference: ordinary autograd, one sample at a time, on the batch NT-Xent
    rows of that sample, with every other row detached."""
    params = dict(h.named_parameters())
    out = []
    for i in range(B):
        zn = h(feats[:, 0:2].reshape(2 * B, D))
        za = h(feats[:, 2:4].reshape(2 * B, D))
        rows = [2 * i, 2 * i + 1]
        own = torch.zeros(2 * B, 1, dtype=torch.bool)
        own[rows] = True
        zn, za = torch.where(own, zn, zn.detach()), torch.where(own, za, za.detach())
        li = 0.5 * (nt_xent_per_sample(zn)[rows].mean() + nt_xent_per_sample(za)[rows].mean())
        gs = torch.autograd.grad(li, [params[n] for n in names])
        out.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(out)


def test_param_scope():
    h = _head()
    assert linear_param_names(h) == ["0.weight", "0.bias", "3.weight"]
    assert linear_param_names(h, "last-1") == ["3.weight"]
    with pytest.raises(Exception, match="last-"):
        linear_param_names(h, "last-3")


@pytest.mark.parametrize("scope", ["head", "last-1"])
def test_per_sample_grads_equal_autograd_loop(scope):
    h = _head()
    hf = HeadFn(h, scope)
    feats = _feats(4)
    obj = Objective("acl", bn=(None, None))
    got = per_sample_grads(obj, hf, feats, chunk=2)  # chunks of 2, 2, 1
    ref = _loop_acl_grads(h, feats, hf.names)
    assert got.shape == (B, hf.dim)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    # the per-sample losses average to the batch ACL loss
    z = [h(feats[:, k:k + 2].reshape(2 * B, D)) for k in (0, 2)]
    torch.testing.assert_close(loss_of(obj, hf, feats).mean(), acl_loss(*z))


def test_mean_grad_is_mean_of_per_sample_grads_and_head_untouched():
    h = _head()
    before = {k: v.clone() for k, v in h.state_dict().items()}
    hf = HeadFn(h)
    obj = Objective("acl", bn=(None, None))
    f1, f2 = _feats(4, 1), _feats(4, 2)
    g1, g2 = per_sample_grads(obj, hf, f1), per_sample_grads(obj, hf, f2)
    mg = mean_grad(obj, hf, [(f1, None, torch.tensor([0, 3])), (f2, None, torch.tensor([4]))])
    torch.testing.assert_close(hf.flatten(mg, batched=False),
                               torch.cat([g1[[0, 3]], g2[[4]]]).mean(0))
    hf.step(mg, 0.1)
    assert all(torch.equal(before[k], v) for k, v in h.state_dict().items())
    assert all(p.requires_grad for p in h.parameters())


@pytest.mark.parametrize("variant", ["faithful", "corrected"])
def test_air_per_sample_losses_average_to_air_loss(variant):
    h = _head()
    hf = HeadFn(h)
    feats = _feats(5)
    obj = Objective("air", bn=(None, None), w_nat=1.0, w_adv=1.0, variant=variant)
    zn = h(feats[:, 0:2].reshape(2 * B, D))
    za = h(feats[:, 2:4].reshape(2 * B, D))
    zo = h(feats[:, 4])
    torch.testing.assert_close(loss_of(obj, hf, feats).mean(),
                               air_loss(zn, za, zo, variant=variant))
    g = per_sample_grads(obj, hf, feats)
    i = 2  # autograd on the same per-sample function
    params = {n: p.clone().requires_grad_(True) for n, p in hf.params.items()}
    ctx = obj.context(hf, hf.params, feats, torch.zeros(B, dtype=torch.long))
    li = obj.loss(hf, params, feats[i], torch.tensor(i), torch.tensor(0), *ctx)
    ref = torch.cat([x.reshape(-1) for x in torch.autograd.grad(li, list(params.values()))])
    torch.testing.assert_close(g[i], ref)


def test_sat_grads_equal_closed_form():
    torch.manual_seed(0)
    clf = nn.Linear(D, 4).double()
    hf = HeadFn(clf)
    feats = _feats(1)
    y = torch.tensor([0, 3, 1, 1, 2])
    g = per_sample_grads(Objective("sat", bn=(None, None)), hf, feats, y)
    p = torch.softmax(clf(feats[:, 0]), dim=1) - nn.functional.one_hot(y, 4)
    closed = torch.cat([(p[:, :, None] * feats[:, 0, None, :]).reshape(B, -1), p], dim=1)
    torch.testing.assert_close(g, closed.detach())


def test_first_order_gain_predicts_rd_change():
    """RD(φ − η g_x) − RD(φ) ≈ −η <g_x, q_U> for small η (exact, unsketched gradients)."""
    h = _head(3)
    hf = HeadFn(h)
    obj = Objective("acl", bn=(None, None))
    gen = torch.Generator().manual_seed(9)
    f_nat = torch.randn(20, D, generator=gen, dtype=torch.float64)
    f_adv = f_nat + 0.5 * torch.randn(20, D, generator=gen, dtype=torch.float64)
    q, rd0 = rd_grad(hf, f_nat, f_adv, "kl", (None, None), batch=7)
    with torch.no_grad():
        assert rd0 == pytest.approx(float(rd_kl(h(f_nat), h(f_adv))))
    g = per_sample_grads(obj, hf, _feats(4))
    for x in range(B):
        errs = []
        for eta in (1e-3, 1e-4):
            moved = {n: hf.params[n] - eta * gx for n, gx in
                     zip(hf.names, _split(g[x], hf))}
            real = float(rd_loss(hf, moved, f_nat, f_adv, "kl", (None, None))) - rd0
            pred = -eta * float(g[x] @ q)
            errs.append(abs(real - pred) / abs(pred))
        assert errs[0] < 5e-2 and errs[1] < 5e-3, errs
        assert errs[1] < errs[0] / 3  # error shrinks like O(η)
    # the doubled step of the published code misses the prediction by a factor 2
    moved = {n: hf.params[n] - 2e-4 * gx for n, gx in zip(hf.names, _split(g[0], hf))}
    real = float(rd_loss(hf, moved, f_nat, f_adv, "kl", (None, None))) - rd0
    assert abs(real / (-1e-4 * float(g[0] @ q)) - 1) > 0.5


def _split(flat: torch.Tensor, hf: HeadFn) -> list[torch.Tensor]:
    out, s = [], 0
    for n in hf.names:
        k = hf.params[n].numel()
        out.append(flat[s:s + k].view_as(hf.params[n]))
        s += k
    return out


def test_greedy_with_real_head_equals_brute_force():
    """rounds = n over a real head: retrieval + mean_grad updates == numpy argmax loop that
    recomputes every gain and moves φ by the pick's own per-sample gradient."""
    import numpy as np

    from rcs.selection.greedy import greedy_rounds
    from rcs.selection.retrieval import Retriever
    from rcs.selection.store import GradientStore

    h = _head(5)
    obj = Objective("acl", bn=(None, None))
    chunks = [_feats(4, 11), _feats(4, 12)]  # two candidate batches of B samples
    gen = torch.Generator().manual_seed(13)
    f_nat = torch.randn(16, D, generator=gen, dtype=torch.float64)
    f_adv = f_nat + 0.5 * torch.randn(16, D, generator=gen, dtype=torch.float64)
    eta, n_sel = 0.5, 6

    hf = HeadFn(h)
    g0 = torch.cat([per_sample_grads(obj, hf, f) for f in chunks]).numpy()
    # brute force
    ref, chosen = HeadFn(h), []
    for _ in range(n_sel):
        q = rd_grad(ref, f_nat, f_adv, "kl", (None, None))[0].numpy()
        gains = g0 @ q
        gains[chosen] = -np.inf
        k = int(np.argmax(gains))
        chosen.append(k)
        gk = per_sample_grads(obj, ref, chunks[k // B])[k % B]
        ref.step(dict(zip(ref.names, _split(gk, ref))), eta)
    # the pieces RCSSelector uses
    store = GradientStore.create(len(g0), g0.shape[1], dtype=np.float32)
    store.write(0, g0)

    def update(r, units):
        groups = [(chunks[c], None, torch.as_tensor(units[units // B == c] % B))
                  for c in np.unique(units // B)]
        hf.step(mean_grad(obj, hf, groups), eta)
        return rd_grad(hf, f_nat, f_adv, "kl", (None, None))[0].numpy()

    q0 = rd_grad(hf, f_nat, f_adv, "kl", (None, None))[0].numpy()
    res = greedy_rounds(len(g0), n_sel, n_sel, q0, Retriever(store).search, update)
    assert [int(p[0]) for p in res.picks] == chosen


@pytest.mark.parametrize("kind", ["acl", "air", "sat"])
def test_exact_gains_equal_brute_force_gradient_inner_products(kind):
    """<∇φ ℓ_i, q> by forward mode equals the per-sample gradient (float64 autograd loop over
    single-sample losses) dotted with q."""
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model
    from rcs.selection.per_sample import per_sample_gains, unflatten

    torch.manual_seed(3)
    m = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=16),
                    classifier=True).double()
    head = HeadFn(m.classifier if kind == "sat" else m.head, dtype=torch.float64)
    obj = Objective(kind, 0.5, ("normal", "pgd"))
    b = 6
    feats = torch.randn(b, len(obj.views), head.module.in_features if kind == "sat" else 8,
                        dtype=torch.float64)
    y = torch.randint(0, 10, (b,))
    q = torch.randn(head.dim, dtype=torch.float64)
    gains = per_sample_gains(obj, head, feats, unflatten(head, q), y)
    ctx = obj.context(head, head.params, feats, y)
    for i in range(b):
        params = {n: p.clone().requires_grad_(True) for n, p in head.params.items()}
        loss = obj.loss(head, params, feats[i], torch.tensor(i), y[i], *ctx)
        g = head.flatten(torch.autograd.grad(loss, list(params.values())), batched=False)
        assert float(gains[i]) == pytest.approx(float(g @ q), rel=1e-9, abs=1e-12)
    # the losses themselves are the batch's per-sample losses
    assert torch.allclose(loss_of(obj, head, feats, y), torch.stack(
        [obj.loss(head, head.params, feats[i], torch.tensor(i), y[i], *ctx) for i in range(b)]))


def test_reused_adversarial_u_gives_the_same_q_as_recomputing_its_features():
    """val_reattack_every=0: after head steps, q_U from U's cached adversarial features equals
    q_U recomputed by passing the stored adversarial images through the encoder again, and
    a fresh attack against the moved head gives another q (the attack is what is reused)."""
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model
    from rcs.selection.validation import RDValidation

    torch.manual_seed(5)
    model = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=16))
    model = model.double().eval()
    head = HeadFn(model.head, dtype=torch.float64)
    bn = {"clean": "normal", "adv": "pgd"}
    feats = lambda x, s: model.features(x, bn[s])  # noqa: E731
    images = torch.rand(12, 3, 16, 16, dtype=torch.float64)
    rdv = RDValidation(feats, head, images, "kl", ("normal", "pgd"), 8 / 255, 3, None, 5,
                       (1, 2))
    q0, _ = rdv.grad()
    step = {n: torch.randn_like(p) for n, p in head.params.items()}
    head.step(step, 0.05)
    q_cached, rd_cached = rdv.grad()
    with torch.no_grad():
        f_adv = model.features(rdv.x_adv, "pgd")
        f_nat = model.features(images, "normal")
    q_fresh, rd_fresh = rd_grad(head, f_nat, f_adv, "kl", ("normal", "pgd"))
    torch.testing.assert_close(q_cached, q_fresh, rtol=1e-10, atol=1e-12)
    assert rd_cached == pytest.approx(rd_fresh, rel=1e-10)
    assert not torch.allclose(q_cached, q0)
    rdv.attack(1)
    assert not torch.allclose(rdv.grad()[0], q_cached)
