"""RCSSelector end to end on a tiny dual-BN ResNet: budget, determinism, no validation ids,
model untouched, library API, methods, sharded gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rcs.config.schema import RunConfig
from rcs.selection import Coreset, RCSSelector, SelectionContext, build_selector
from rcs.selection.store import RowSink, concat_shards

N = 60  # the images of conftest's `data` fixture
SMALL = {"candidate_batch": 8, "sketch_dim": 32, "rounds": 3}


def _ctx(model, data, fraction=7 / 54, seed=1, epoch=0):
    ds, cand, val = data
    return SelectionContext(ds, cand, val, fraction, seed=seed, model=model, device="cpu",
                            epoch=epoch)


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [p.requires_grad for p in model.parameters()],
            [m.training for m in model.modules()],
            [getattr(m, "active", None) for m in model.modules()])


def _same(model, snap):
    sd, req, train, active = snap
    now = _snapshot(model)
    return (all(torch.equal(sd[k], v) for k, v in now[0].items()) and now[1] == req
            and now[2] == train and now[3] == active)


@pytest.mark.parametrize("granularity", ["sample", "batch"])
def test_exact_budget_no_val_deterministic_model_untouched(model, data, granularity):
    ds, cand, val = data
    model.train()
    model.encoder.conv1.weight.requires_grad_(False)  # odd flags must come back as they were
    model.set_branch("pgd")
    snap = _snapshot(model)
    sel = RCSSelector(None, granularity=granularity, **SMALL)
    ctx = _ctx(model, data)
    assert ctx.budget == 7
    a, b = sel.select(ctx), sel.select(_ctx(model, data))
    assert len(a) == 7 and a.indices.dtype == np.int64
    assert np.all(np.diff(a.indices) > 0)
    assert set(a.indices) <= set(cand) and not set(a.indices) & set(val)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert _same(model, snap)
    model.encoder.conv1.weight.requires_grad_(True)
    m = a.meta
    assert m["method"] == "rcs" and m["dataset_len"] == N and m["fingerprint"] == ds.fingerprint()
    assert m["settings"]["granularity"] == granularity and m["settings"]["rounds"] == 3
    assert set(m["timings"]) >= {"gradients", "validation", "greedy", "total"}
    assert len(a.gains) == m["rounds_run"] <= 3
    if granularity == "batch":  # one whole batch of 8 covers 7: trimmed by one
        assert m["trimmed"] == 1
    other = sel.select(_ctx(model, data, seed=2))
    assert len(other) == 7 and not np.array_equal(other.indices, a.indices)


def test_rounds_equal_budget_and_options(model, data, tmp_path):
    sel = RCSSelector(None, candidate_batch=8, sketch_dim=16, rounds=7, store="disk",
                      index="ivfpq", val_reattack_every=2, rd_distance="minmax_kl",
                      scope="last-1", work_dir=tmp_path)
    cs = sel.select(_ctx(model, data))
    assert len(cs) == 7 and cs.meta["rounds_run"] == 7
    assert cs.meta["val_attacks"] == 1 + 3  # initial + after rounds 2, 4, 6
    assert cs.meta["param_names"] == ["fc3.weight"]
    assert list(tmp_path.iterdir()) == [] or not any(tmp_path.rglob("*.npy"))  # cleaned up
    path = cs.save(tmp_path / "c.npz")
    back = Coreset.load(path, dataset_len=N, fingerprint=data[0].fingerprint())
    np.testing.assert_array_equal(back.indices, cs.indices)
    assert back.meta["settings"]["index"] == "ivfpq"


@pytest.mark.parametrize("method", ["air", "sat"])
def test_other_methods(model, data, method):
    snap = _snapshot(model)
    cs = RCSSelector(None, method=method, **SMALL).select(_ctx(model, data, fraction=0.2))
    assert len(cs) == round(0.2 * 54) and not set(cs.indices) & set(data[2])
    assert cs.meta["param_names"] == (["weight", "bias"] if method == "sat" else
                                      ["fc1.weight", "fc1.bias", "fc2.weight", "fc3.weight"])
    assert _same(model, snap)


def test_registry_uses_run_config(model, data):
    cfg = RunConfig()
    cfg.selection.rounds, cfg.selection.candidate_batch, cfg.selection.sketch_dim = 2, 8, 16
    sel = build_selector("rcs", cfg)
    assert isinstance(sel, RCSSelector) and sel.scfg.rounds == 2
    assert len(sel.select(_ctx(model, data))) == 7
    with pytest.raises(Exception, match="unknown RCS setting"):
        RCSSelector(None, round=3)


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i].transpose(2, 0, 1).copy()), int(self.labels[i])


def test_library_api_with_callables(model, data):
    ds, _, val = data
    torch_ds = _ListDataset(ds.images, ds.labels)
    snap = _snapshot(model)
    sel = RCSSelector(encoder=lambda x, bn: model.features(x, bn), head=model.head,
                      bn={"clean": "normal", "adv": "pgd"}, fraction=0.1, seed=3, **SMALL)
    cs = sel.select(torch_ds, val)
    assert len(cs) == round(0.1 * (N - len(val))) and not set(cs.indices) & set(val)
    assert _same(model, snap)
    # a separate validation dataset: indices refer to the training dataset only
    train, valset = _ListDataset(ds.images[:50], ds.labels[:50]), torch.from_numpy(
        ds.images[50:].transpose(0, 3, 1, 2).copy())
    cs2 = sel.select(train, valset)
    assert len(cs2) == 5 and cs2.indices.max() < 50 and cs2.meta["dataset_len"] == 50
    assert _same(model, snap)


def test_sharded_gradient_phase_equals_single_process(model, data, tmp_path):
    ds, cand, _ = data
    sel = RCSSelector(None, **SMALL)
    ctx = _ctx(model, data)
    from rcs.selection.api import frozen, net_from_model
    from rcs.selection.per_sample import HeadFn
    from rcs.selection.sketch import Sketch

    net = net_from_model(model)
    obj, head = sel._objective(net), HeadFn(net.head)
    sketch = Sketch(head.dim, 32, seed=0)
    order = np.random.default_rng(0).permutation(cand)
    with frozen(net.modules):
        single = {"grads": RowSink(len(order)), "feats": RowSink(len(order))}
        sel._gradient_phase(ctx, net, obj, head, sketch, order, single)
        for rank in range(2):
            sinks = {k: RowSink(shard=tmp_path / k, name=f"r{rank}") for k in ("grads", "feats")}
            sel._gradient_phase(ctx, net, obj, head, sketch, order, sinks, rank, 2)
            for s in sinks.values():
                s.finish()
    for k in ("grads", "feats"):
        merged = concat_shards(tmp_path / k, len(order))
        np.testing.assert_array_equal(merged.to_numpy(), single[k].finish().to_numpy())


def test_class_balanced_rcs_meets_quotas(model, data):
    from rcs.selection.base import class_quotas

    ds, cand, val = data
    ctx = _ctx(model, data, fraction=0.3)
    cs = RCSSelector(None, class_balanced=True, **SMALL).select(ctx)
    pool, k = ctx.selectable()
    classes, quota = class_quotas(ds.labels[pool], k)
    np.testing.assert_array_equal(
        [(ds.labels[cs.indices] == c).sum() for c in classes], quota)
    assert not set(cs.indices) & set(val)
    with pytest.raises(Exception, match="granularity=sample"):
        RunConfig(selection=dataclasses.replace(RunConfig().selection, method="rcs",
                                                class_balanced=True,
                                                granularity="batch")).validate()


@pytest.mark.parametrize("granularity", ["sample", "batch"])
def test_exact_gradients_pick_what_an_unsketched_store_picks(model, data, granularity):
    """gradients=exact (no store, JVP gains each round) and gradients=sketch with a store wide
    enough to hold the gradients unsketched choose the same coreset; re-attacks of U never
    (val_reattack_every=0) leave one attack."""
    ctx = _ctx(model, data, fraction=0.25)
    kw = {"candidate_batch": 8, "rounds": 4, "granularity": granularity}
    snap = _snapshot(model)
    exact = RCSSelector(None, gradients="exact", **kw).select(ctx)
    store = RCSSelector(None, gradients="sketch", sketch_dim=10**6, **kw).select(ctx)
    np.testing.assert_array_equal(exact.indices, store.indices)
    np.testing.assert_allclose(exact.meta["round_gain_mean"], store.meta["round_gain_mean"],
                               rtol=1e-3, atol=1e-7)
    assert exact.meta["sketch"] is None and exact.meta["retrieval"] == "exact-jvp"
    assert _same(model, snap)
    once = RCSSelector(None, gradients="exact", val_reattack_every=0, **kw).select(ctx)
    assert once.meta["val_attacks"] == 1 and len(once) == len(exact)


def test_candidate_pool_picks_inside_the_seeded_pool_with_the_exact_budget(model, data):
    ctx = _ctx(model, data, fraction=0.2)
    sel = RCSSelector(None, pool=0.5, **SMALL)
    cs = sel.select(ctx)
    order = sel.candidate_features(ctx)[0]  # the seeded order whose prefix is the pool
    pool = set(order[:int(np.ceil(0.5 * len(order)))].tolist())
    assert len(cs) == ctx.selectable()[1] and set(cs.indices.tolist()) <= pool
    # a pool smaller than the budget is widened to the budget
    tiny = RCSSelector(None, pool=0.01, **SMALL).select(ctx)
    assert len(tiny) == ctx.selectable()[1]
