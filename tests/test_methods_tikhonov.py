"""The Tikhonov input-gradient penalty as a wrapper of a trainer method."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rcs.config import load_config
from tests.conftest import METHOD_TINY as TINY

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")


def test_tikhonov_wrapper_on_acl_adds_the_penalty_of_the_forward_inputs():
    from rcs.methods.tikhonov import TikhonovPenalty

    sets = TINY + ["train.method=acl", "train.tikhonov.lam=10"]
    cfg = load_config(None, sets)
    from rcs.data import Augment, build_dataset
    from rcs.methods import build_method
    from rcs.methods.base import MultiForward
    from rcs.models import build_model

    m = build_method("acl", cfg)
    assert isinstance(m, TikhonovPenalty) and m.name == "acl"
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ds = build_dataset(cfg.data)
    x, _ = ds.get_batch(np.arange(8))
    twin = copy.deepcopy(model)  # the step updates BN running statistics
    out = m.step(MultiForward(model), model, x, None, Augment(cfg.augment),
                 torch.Generator().manual_seed(0))
    base = m.inner.step(MultiForward(twin), twin, x, None, Augment(cfg.augment),
                        torch.Generator().manual_seed(0))
    assert out.metrics["loss_base"] == pytest.approx(float(base.loss.detach()), rel=1e-6)
    assert out.metrics["tikhonov"] > 0
    assert float(out.loss.detach()) == pytest.approx(
        float(base.loss.detach()) + out.metrics["tikhonov"], rel=1e-6)
    out.loss.backward()  # double backward through the dual-BN model works
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad
               and p.dim() > 1)
