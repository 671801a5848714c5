"""LARS vs the update formula by hand (float64), the optimizer builder and the LR schedule."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rcs.config.schema import TrainConfig
from rcs.errors import ConfigError
from rcs.train.optim import LARS, build_optimizer
from rcs.train.schedule import (
    CosineWarmup,
    EpochCosineWarmup,
    epoch_position,
    epoch_samples,
    planned_samples,
    set_lr,
)


def hand_lars(ws, grads_per_step, lr, m=0.9, wd=1e-6, eta=1e-3):
    """Reference LARS (PUBLISHED_METHODS.md A0.5) on numpy float64 arrays; returns the weights."""
    ws = [w.copy() for w in ws]
    bufs = [np.zeros_like(w) for w in ws]
    for grads in grads_per_step:
        for k, (w, g) in enumerate(zip(ws, grads)):
            wn = math.sqrt(sum(v * v for v in w.ravel()))
            gn = math.sqrt(sum(v * v for v in g.ravel()))
            local = 1.0 if (wn < 1e-15 or gn < 1e-15) else eta * wn / (gn + wd * wn)
            bufs[k] = m * bufs[k] + lr * local * (g + wd * w)
            ws[k] = w - bufs[k]
    return ws


def _params(rng):
    w1 = rng.standard_normal((3, 2))
    w2 = np.zeros(4)                      # zero-norm branch (BN bias at init)
    w3 = rng.standard_normal(5)           # gets a zero gradient in step 1
    return [w1, w2, w3]


def _grads(rng):
    s1 = [rng.standard_normal((3, 2)), rng.standard_normal(4), np.zeros(5)]
    s2 = [rng.standard_normal((3, 2)), rng.standard_normal(4), rng.standard_normal(5)]
    return [s1, s2]


@pytest.mark.parametrize("wd", [1e-6, 0.1])
def test_lars_two_steps_vs_hand(wd):
    rng = np.random.default_rng(0)
    ws, grads = _params(rng), _grads(rng)
    ps = [torch.nn.Parameter(torch.tensor(w)) for w in ws]
    opt = LARS(ps, lr=5.0, momentum=0.9, weight_decay=wd, trust_coef=1e-3)
    for step, gs in enumerate(grads):
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g)
        opt.step()
        want = hand_lars(ws, grads[: step + 1], lr=5.0, wd=wd)
        for p, w in zip(ps, want):
            assert np.allclose(p.detach().numpy(), w, atol=1e-12, rtol=1e-10)


def test_lars_zero_norm_is_plain_sgd_first_step():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    LARS([p], lr=0.1, weight_decay=1e-6).step()
    assert torch.allclose(p.detach(), torch.tensor([-0.1, 0.2, -0.05], dtype=torch.float64))


def test_lars_skips_params_without_grad_and_state_dict_resume():
    rng = np.random.default_rng(1)
    ws, grads = _params(rng), _grads(rng)

    def make():
        ps = [torch.nn.Parameter(torch.tensor(w)) for w in ws]
        return ps, LARS(ps, lr=1.0)

    ps_a, opt_a = make()
    extra = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt_a.add_param_group({"params": [extra]})
    for p, g in zip(ps_a, grads[0]):
        p.grad = torch.tensor(g)
    opt_a.step()
    assert torch.equal(extra.detach(), torch.ones(2, dtype=torch.float64))
    sd = copy.deepcopy(opt_a.state_dict())  # as if written to and read from a checkpoint
    assert all("momentum_buffer" in s for s in sd["state"].values())
    # resume into a fresh optimizer whose params hold the same values
    ps_b = [torch.nn.Parameter(p.detach().clone()) for p in ps_a]
    opt_b = LARS(ps_b, lr=1.0)
    opt_b.add_param_group({"params": [torch.nn.Parameter(torch.ones(2, dtype=torch.float64))]})
    opt_b.load_state_dict(sd)
    for ps, opt in ((ps_a, opt_a), (ps_b, opt_b)):
        for p, g in zip(ps, grads[1]):
            p.grad = torch.tensor(g)
        opt.step()
    for pa, pb in zip(ps_a, ps_b):
        assert torch.equal(pa, pb)
    want = hand_lars(ws, grads, lr=1.0)
    for p, w in zip(ps_a, want):
        assert np.allclose(p.detach().numpy(), w, atol=1e-12)


def test_build_optimizer():
    params = [torch.nn.Parameter(torch.randn(2, 2))]
    lars = build_optimizer(params, TrainConfig())
    assert isinstance(lars, LARS)
    g = lars.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"], g["trust_coef"]) == (5.0, 0.9, 1e-6, 1e-3)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sgd = build_optimizer(params, cfg)
    assert type(sgd) is torch.optim.SGD
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.1, 0.9, True, 5e-4)
    with pytest.raises(ConfigError):
        build_optimizer(params, TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True))
    with pytest.raises(ConfigError):
        build_optimizer(params, TrainConfig(optimizer="adam"))


def test_set_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.5})
    set_lr(opt, 0.2)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.1]


# ----------------------------------------------------------------------------- schedule


def test_schedule_endpoints_and_closed_form():
    base, mn = 5.0, 1e-6
    sch = CosineWarmup(base, total_samples=10_000, warmup_samples=1_000, min_lr=mn)
    assert sch.lr_at(0) == 0.0
    assert sch.lr_at(500) == pytest.approx(2.5)
    assert sch.lr_at(1_000) == pytest.approx(base)
    assert sch.lr_at(5_500) == pytest.approx((base + mn) / 2)        # cosine midpoint
    assert sch.lr_at(10_000) == mn and sch.lr_at(12_345) == mn
    # 1/4 of the cosine: 0.5 (1 + cos(pi/4))
    assert sch.lr_at(3_250) == pytest.approx(mn + (base - mn) * 0.5 * (1 + math.sqrt(0.5)))
    lrs = [sch.lr_at(s) for s in range(1_000, 10_001, 250)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert CosineWarmup(1.0, 100).lr_at(0) == 1.0                   # no warm-up
    with pytest.raises(ValueError):
        CosineWarmup(1.0, 100, warmup_samples=200)


def test_schedule_over_shrinking_epochs():
    """3 full epochs of 1000 samples, then coreset epochs of 20% (200): T = 3000 + 7 * 200."""
    full, core, epochs, bs = 1000, 200, 10, 128
    T = planned_samples(epochs, full, core, warmup_epochs_full=3)
    W = planned_samples(2, full, core, warmup_epochs_full=3)
    assert (T, W) == (4400, 2000)
    assert planned_samples(4.5, full, core, 3) == 3300
    sch = CosineWarmup(1.0, T, W, min_lr=0.01)
    seen, checked = 0, 0
    for e in range(1, epochs + 1):
        n = full if e <= 3 else core
        for start in range(0, n, bs):
            seen += min(bs, n - start)          # last batch partial, not dropped
            lr = sch.lr_at(seen)
            if seen < 2000:
                want = seen / 2000
            else:
                want = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (seen - 2000) / 2400))
            assert lr == pytest.approx(want, abs=1e-12)
            checked += 1
    assert seen == T and sch.lr_at(seen) == 0.01 and checked > 20
    # halfway through the coreset phase the lr is the closed form at 3000 + 3.5 * 200
    assert sch.lr_at(3700) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 1700
                                                                                / 2400)))


def test_planned_samples_drop_last_and_state():
    assert epoch_samples(1000, 128, drop_last=True) == 896
    assert epoch_samples(1000, 128) == 1000
    assert planned_samples(5, 1000, 200, 2, batch_size=128, drop_last=True) == 2 * 896 + 3 * 128
    assert planned_samples(7, 1000) == 7000
    sch = CosineWarmup(0.5, 100, 10, 1e-3)
    assert CosineWarmup.from_state_dict(sch.state_dict()) == sch


def test_epoch_schedule_closed_form_whatever_the_epoch_length():
    """lr of step b of epoch e with n batches = f((e - 1) + (b + 1) / n): epochs of any length
    end at the same point of the curve (the published per-epoch rebuilt LambdaLR)."""
    base, mn, E, W = 5.0, 1e-6, 1000, 10
    sch = EpochCosineWarmup(base, E, W, mn)

    def f(t):
        if t < W:
            return base * t / W
        return mn + (base - mn) * 0.5 * (1 + math.cos(math.pi * (t - W) / (E - W)))

    for e, n in [(1, 98), (10, 98), (101, 20), (101, 5), (550, 10), (1000, 3)]:
        for b in range(n):
            assert sch.lr_for_step(e, b, n) == pytest.approx(f(e - 1 + (b + 1) / n), rel=1e-12)
    # the first coreset step of a k = 0.2 run (epoch 101, 20 batches): 4.90 as published
    assert sch.lr_for_step(101, 0, 20) == pytest.approx(4.8987, abs=1e-3)
    ends = {n: sch.lr_for_step(300, n - 1, n) for n in (98, 20, 10, 5)}
    assert max(ends.values()) == min(ends.values()) == pytest.approx(f(300))
    assert sch.lr_at(0) == 0 and sch.lr_at(E) == mn and sch.lr_at(E + 5) == mn
    assert epoch_position(3, 0, 4) == 2.25 and epoch_position(3, 3, 4) == 3.0
    assert EpochCosineWarmup.from_state_dict(sch.state_dict()) == sch
    with pytest.raises(ValueError):
        epoch_position(1, 4, 4)
    with pytest.raises(ValueError):
        EpochCosineWarmup(1.0, 5, warmup_epochs=6)
