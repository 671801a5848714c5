"""BYORL as a trainer method: its target is an exact EMA of the online network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import method_setup as _setup

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")


def test_byorl_target_is_an_exact_ema_of_the_online_network():
    from rcs.methods.byorl import ema_rate

    cfg, m, model, extras, fw, ds, aug = _setup("byorl")
    target, online = extras["target"], model
    assert not any(p.requires_grad for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))
    params = [*model.parameters(), *extras["predictor"].parameters()]
    opt = torch.optim.SGD(params, lr=0.5)
    x, _ = ds.get_batch(np.arange(16))
    ref = [p.detach().double().clone() for p in target.parameters()]
    for k, progress in enumerate([0.0, 0.3, 1.0]):
        old = [p.detach().clone() for p in target.parameters()]
        out = m.step(fw, model, x, None, aug, torch.Generator().manual_seed(k))
        opt.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in target.parameters())
        opt.step()
        m.after_step(progress)
        tau = ema_rate(progress, 0.996)
        assert m.tau == tau
        for xi, xi_old, theta in zip(target.parameters(), old, online.parameters()):
            assert torch.equal(xi, xi_old.mul(tau).add(theta.detach(), alpha=1 - tau))
        ref = [tau * r + (1 - tau) * th.detach().double()
               for r, th in zip(ref, online.parameters())]
        for b_t, b_o in zip(target.buffers(), online.buffers()):
            assert torch.equal(b_t, b_o)
    assert all(torch.allclose(xi.double(), r, atol=1e-7) for xi, r in zip(target.parameters(), ref))
    assert ema_rate(0.0) == pytest.approx(0.996) and ema_rate(1.0) == 1.0
    assert ema_rate(0.5) == pytest.approx(0.998)
    # at progress 1 the target stops moving: tau = 1
    assert torch.equal(next(target.parameters()), old[0].mul(1.0).add(
        next(online.parameters()).detach(), alpha=0.0))
