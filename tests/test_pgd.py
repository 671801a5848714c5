"""PGD engine: bounds, ascent, mode/flag restoration, hand-computed steps, objectives."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rcs.attacks import attack_mode, objectives, pgd
from rcs.losses import nt_xent, rd_kl

EPS, ALPHA = 8 / 255, 2 / 255


def tiny_model(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, classes))


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 5, 5, generator=g)
    x[0, 0, 0, :] = 0.0  # pixels on the box borders
    x[0, 1, 0, :] = 1.0
    return x


def warm_bn(model: nn.Module) -> None:
    """Give BN non-trivial running stats, then train mode."""
    model.train()
    with torch.no_grad():
        model(images(8, seed=5))


def test_bounds_and_ascent_ce():
    model = tiny_model()
    warm_bn(model)
    model.eval()
    x, y = images(), torch.tensor([0, 1, 2, 0])
    g = torch.Generator().manual_seed(0)
    x_adv = pgd(objectives.cross_entropy(model, y), x, EPS, ALPHA, 10, generator=g, model=model)
    assert (x_adv - x).abs().max() <= EPS + 1e-7
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    g0 = torch.Generator().manual_seed(0)
    x0 = x + torch.empty_like(x).uniform_(-EPS, EPS, generator=g0)  # the same start point
    with torch.no_grad():
        l_adv, l_start = F.cross_entropy(model(x_adv), y), F.cross_entropy(model(x0), y)
        l_clean = F.cross_entropy(model(x), y)
    assert l_adv >= l_start and l_adv > l_clean


def test_linear_objective_reaches_brute_force_optimum():
    """For a linear loss sum(c*x) the optimum over ball and box is a vertex; brute force it."""
    x = torch.tensor([[0.0, 0.5, 0.99, 1.0, 0.02, 0.3]])
    c = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0, 0.7]])
    eps, alpha = 0.05, 0.02
    x_adv = pgd(lambda z: (c * z).sum(), x, eps, alpha, steps=10, random_start=True,
                generator=torch.Generator().manual_seed(1))
    best = -1e9
    for signs in itertools.product((-1.0, 1.0), repeat=x.numel()):
        cand = (x + eps * torch.tensor(signs).view_as(x)).clamp(0, 1)
        best = max(best, (c * cand).sum().item())
    assert (c * x_adv).sum().item() == pytest.approx(best, abs=1e-6)


def test_tiny_mlp_beats_random_feasible_points():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.rand(1, 4, generator=torch.Generator().manual_seed(2))

    def loss(z):
        return net(z).sum()

    x_adv = pgd(loss, x, 0.1, 0.02, 20, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        cands = (x + torch.empty(500, 4).uniform_(-0.1, 0.1, generator=g)).clamp(0, 1)
        assert loss(x_adv).item() >= net(cands).max().item() - 1e-6


def test_eval_bn_stats_untouched_and_flags_restored():
    model = tiny_model()
    warm_bn(model)
    model.train()
    model[1].eval()                         # a submodule in eval while the parent trains
    model[0].bias.requires_grad_(False)     # mixed requires_grad flags
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    bn = model[1]
    rm, rv, nbt = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    seen = []

    def loss_fn(z):
        seen.append(([m.training for m in model.modules()],
                     [p.requires_grad for p in model.parameters()]))
        return nt_xent(model(z))

    pgd(loss_fn, images(), EPS, ALPHA, 3, model=model)
    assert all(not any(t) and not any(r) for t, r in seen) and len(seen) == 3
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(bn.running_mean, rm) and torch.equal(bn.running_var, rv)
    assert torch.equal(bn.num_batches_tracked, nbt)
    assert all(p.grad is None for p in model.parameters())


def test_flags_restored_when_loss_raises():
    model = tiny_model()
    model.train()
    model[4].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]

    def boom(z):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pgd(boom, images(), EPS, ALPHA, 2, model=model)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags


def test_attack_mode_accepts_several_modules():
    a, b = nn.Linear(2, 2), nn.BatchNorm1d(2)
    a.train(), b.train()
    with attack_mode([a, b]):
        assert not a.training and not b.training
        assert not any(p.requires_grad for p in (*a.parameters(), *b.parameters()))
    assert a.training and b.training and all(p.requires_grad for p in a.parameters())


def test_one_step_equals_hand_autograd():
    model = tiny_model()
    warm_bn(model)
    model.eval()
    x, y = images(), torch.tensor([2, 1, 0, 1])
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    want = torch.min(torch.max(x + ALPHA * xr.grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    got = pgd(objectives.cross_entropy(model, y), x, EPS, ALPHA, 1, random_start=False,
              model=model)
    assert torch.allclose(got, want, atol=1e-7, rtol=0)


def test_ce_matches_hand_madry_loop():
    model = tiny_model(seed=1)
    warm_bn(model)
    x, y = images(seed=1), torch.tensor([0, 2, 1, 1])
    steps = 5
    # hand-written Madry PGD (eval mode), same seed for the uniform start
    model.eval()
    g = torch.Generator().manual_seed(123)
    delta = torch.empty_like(x).uniform_(-EPS, EPS, generator=g)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        grad = torch.autograd.grad(loss, delta)[0]
        delta = torch.clamp(delta.detach() + ALPHA * grad.sign(), -EPS, EPS)
        delta = torch.clamp(x + delta, 0, 1) - x
    want = (x + delta).clamp(0, 1)
    model.train()
    got = pgd(objectives.cross_entropy(lambda z: model(z), y), x, EPS, ALPHA, steps,
              generator=torch.Generator().manual_seed(123), model=model)
    assert torch.allclose(got, want, atol=1e-7, rtol=0)
    assert model.training


def test_plain_lambda_and_no_grad_context():
    x = images()
    with torch.no_grad():
        x_adv = pgd(lambda z: (z ** 2).sum(), x, EPS, ALPHA, 4, random_start=False)
    assert ((x_adv ** 2).sum() > (x ** 2).sum()).item()
    # for z^2 the sign of the gradient is +1 where z > 0 (pixels move up by eps) and 0 at z = 0
    want = torch.where(x > 0, (x + EPS).clamp(0, 1), x)
    assert torch.allclose(x_adv, want, atol=1e-6)


def test_steps_zero_returns_x_and_bad_args():
    x = images()
    assert torch.equal(pgd(lambda z: z.sum(), x, EPS, ALPHA, 0), x)
    with pytest.raises(ValueError):
        pgd(lambda z: z.sum(), x, -1.0, ALPHA, 1)


def test_trades_start_and_project_flag():
    x = images()
    g = torch.Generator().manual_seed(4)
    noise = 0.001 * torch.empty_like(x).normal_(generator=torch.Generator().manual_seed(4))
    got = pgd(lambda z: z.sum() * 0, x, EPS, 0.0, 1, trades_start=True, generator=g)
    assert torch.allclose(got, (x + noise).clamp(0, 1), atol=1e-7)
    # without the box projection x + delta may leave [0, 1] (ball projection still applies)
    out = pgd(lambda z: z.sum(), x, EPS, ALPHA, 5, random_start=False, project=False)
    assert out.max() > 1.0 and torch.allclose(out, x + EPS, atol=1e-6)


def test_contrastive_objective_and_seed_reproducible():
    model = nn.Sequential(nn.Flatten(), nn.Linear(75, 6))
    x = images()
    fn = objectives.contrastive(lambda z: model(z), 0.5)
    a = pgd(fn, x, EPS, ALPHA, 3, generator=torch.Generator().manual_seed(0), model=model)
    b = pgd(fn, x, EPS, ALPHA, 3, generator=torch.Generator().manual_seed(0), model=model)
    assert torch.equal(a, b)
    with torch.no_grad():
        assert nt_xent(model(a)) > nt_xent(model(x))
    assert fn(x).item() == pytest.approx(nt_xent(model(x)).item())


def test_kl_and_rd_objectives():
    model = nn.Sequential(nn.Flatten(), nn.Linear(75, 5))
    x = images()
    with torch.no_grad():
        z_nat = model(x)
    kl = objectives.kl_trades(model, z_nat)
    assert kl(x).item() == pytest.approx(0.0, abs=1e-6)
    x_adv = pgd(kl, x, EPS, ALPHA, 3, trades_start=True,
                generator=torch.Generator().manual_seed(0))
    assert kl(x_adv).item() > 1e-6
    for dist in ("kl", "minmax_kl"):
        fn = objectives.rd(model, z_nat, dist)
        x_adv = pgd(fn, x, EPS, ALPHA, 3, generator=torch.Generator().manual_seed(0))
        assert fn(x_adv).item() > fn(x).item() - 1e-7
    with torch.no_grad():
        assert objectives.rd(model, z_nat)(x_adv).item() == pytest.approx(
            rd_kl(z_nat, model(x_adv)).item())
    with pytest.raises(ValueError):
        objectives.rd(model, z_nat, "ot")


def test_pgd_start_clamp_keeps_the_first_forward_in_the_box():
    from rcs.attacks import pgd

    x = torch.tensor([[0.0, 0.01, 0.5, 0.99, 1.0]]).repeat(64, 1)
    for clamp in (False, True):
        seen = []

        def loss_fn(xa, seen=seen):
            seen.append(xa.detach().clone())
            return xa.sum()

        pgd(loss_fn, x, eps=0.03, alpha=0.0, steps=1, generator=torch.Generator().manual_seed(0),
            start_clamp=clamp)
        first = seen[0]
        inside = bool(((first >= 0) & (first <= 1)).all())
        assert inside == clamp
        assert ((first - x).abs() <= 0.03 + 1e-7).all()
