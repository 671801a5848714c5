"""One selector core: SelectorSettings resolves every selector's settings from the config
dataclasses' defaults (and the run config), candidate_batch = 0 is resolved in one place, and
the gradient baselines' per-sample gradients are the rows RCS's phase 1 computes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rcs.config import FinetuneConfig, RunConfig, SelectionConfig, TrainConfig
from rcs.config.schema import LIBRARY_CANDIDATE_BATCH, resolve_candidate_batch
from rcs.data import ImageDataset, train_val_split
from rcs.errors import ConfigError
from rcs.selection import RCSSelector, SelectionContext, build_selector
from rcs.selection.settings import SelectorSettings

torch.set_num_threads(1)


def test_defaults_are_the_config_dataclasses_defaults():
    s = SelectorSettings.resolve()
    tr, ft = TrainConfig(), FinetuneConfig()
    want = dataclasses.replace(SelectionConfig(), candidate_batch=LIBRARY_CANDIDATE_BATCH)
    assert s.selection == want
    assert (s.method, s.temperature, s.eps, s.amp, s.branch) == (
        tr.method, tr.temperature, tr.attack.eps, tr.amp, ft.branch)
    assert s.air == (tr.air.lambda1, tr.air.lambda2, tr.air.variant)


def test_run_config_and_overrides():
    cfg = RunConfig()
    cfg.train.method, cfg.train.temperature, cfg.train.batch_size = "air", 0.2, 64
    cfg.train.air.lambda2, cfg.finetune.branch = 0.3, "normal"
    cfg.selection.rounds, cfg.selection.seed = 5, 4
    cfg.validate()
    s = SelectorSettings.resolve(cfg)
    assert (s.method, s.temperature, s.branch, s.selection.rounds) == ("air", 0.2, "normal", 5)
    assert s.selection.candidate_batch == 64 and s.air == (0.5, 0.3, "faithful")
    assert s.objective_kind == "air" and s.selection.seed == 4
    assert cfg.selection.rounds == 5  # the run config is not modified
    o = SelectorSettings.resolve(cfg, batch=8, attack_steps=2, air_variant="x", seed=9,
                                 rounds=None, temperature=0.7, selector="gradnorm")
    assert (o.batch, o.attack_steps, o.air[2], o.temperature) == (8, 2, "x", 0.7)
    assert o.selection.rounds == 5  # None = not given
    assert o.seed == 9 and o.selection.seed == 4  # seed= is the library run seed
    assert o.selection.method == "gradnorm" and cfg.selection.method == "full"
    with pytest.raises(ConfigError, match="unknown gradnorm setting"):
        SelectorSettings.resolve(cfg, selector="gradnorm", rounds_=3)
    with pytest.raises(ConfigError):
        SelectorSettings.resolve(batch=1)
    with pytest.raises(ConfigError):
        SelectorSettings.resolve(attack_steps=-1)


def test_candidate_batch_zero_is_resolved_in_one_place():
    assert resolve_candidate_batch(0, 96) == 96
    assert resolve_candidate_batch(0) == LIBRARY_CANDIDATE_BATCH
    assert resolve_candidate_batch(24, 96) == 24
    cfg = RunConfig()
    cfg.train.batch_size = 48
    assert cfg.validate().selection.candidate_batch == 48
    raw = RunConfig()  # not validated: the selectors resolve 0 the same way
    raw.train.batch_size = 40
    for name in ("rcs", "gradnorm", "craig", "kcenter"):
        sel = build_selector(name, raw)
        assert sel.settings.selection.candidate_batch == 40, name
        assert build_selector(name).settings.selection.candidate_batch == \
            LIBRARY_CANDIDATE_BATCH, name


@pytest.fixture(scope="module")
def setup():
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=16))
    rng = np.random.default_rng(1)
    n = 50
    ds = ImageDataset(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                      rng.integers(0, 10, n))
    cand, val = train_val_split(n, 0.1, 0)
    ctx = SelectionContext(ds, cand, val, 0.3, seed=2, model=model, device="cpu", epoch=1)
    return model, ctx


def _rcs_phase1(ctx, sketch_dim=None):
    """Per-sample rows RCS's phase 1 stores for the candidates (unsketched when sketch_dim is
    None), by candidate id."""
    from rcs.selection.api import frozen
    from rcs.selection.gradient_pass import candidate_order, make_sketch
    from rcs.selection.per_sample import HeadFn
    from rcs.selection.store import RowSink

    sel = RCSSelector(None, candidate_batch=16, sketch_dim=sketch_dim or 32)
    net = sel._net(ctx.model)
    obj, head = sel._objective(net), HeadFn(net.head, "head")
    sketch = make_sketch(ctx, sel.settings, head.dim) if sketch_dim else None
    order = candidate_order(ctx, sel.settings)
    sinks = {"grads": RowSink(len(order), None, np.float32),
             "feats": RowSink(len(order), None, np.float32)}
    with frozen(net.modules):
        sel._gradient_phase(ctx, net, obj, head, sketch, order, sinks)
    rows = sinks["grads"].finish().rows(np.arange(len(order)))
    return dict(zip(order.tolist(), rows))


def test_gradnorm_scores_are_norms_of_rcs_phase1_gradients(setup):
    from rcs.selection.gradnorm import GradNormSelector

    model, ctx = setup
    rows = _rcs_phase1(ctx)
    sel = GradNormSelector(None, batch=16)
    sel.select(ctx)
    ids, scores = sel.last_scores
    assert len(next(iter(rows.values()))) > 100  # whole head gradients
    want = np.array([np.linalg.norm(rows[i].astype(np.float64)) for i in ids.tolist()])
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    assert np.ptp(scores) > 0


def test_craig_gradients_are_rcs_phase1_sketches(setup):
    from rcs.selection.gradient_pass import head_gradients

    model, ctx = setup
    rows = _rcs_phase1(ctx, sketch_dim=32)
    s = build_selector("craig").settings
    s.selection.candidate_batch, s.selection.sketch_dim = 16, 32
    from rcs.selection.craig import make_sketch  # the sketch CRAIG builds
    from rcs.selection.per_sample import HeadFn

    sketch = make_sketch(ctx, s, HeadFn(model.head, "head").dim)
    cand = ctx.selectable()[0]
    seen = 0
    for pos, g in head_gradients(ctx, s, sketch):
        for p, row in zip(pos.tolist(), g.numpy()):
            np.testing.assert_allclose(row, rows[int(cand[p])], rtol=1e-5, atol=1e-7)
            seen += 1
    assert seen == len(cand)
