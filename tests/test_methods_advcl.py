"""AdvCL as a trainer method: the pseudo-label schedule and state, and which BN branches its
attacks and training forward go through."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.conftest import method_setup as _setup

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")


def test_advcl_pseudo_labels_schedule_and_state():
    cfg, m, model, extras, fw, ds, aug = _setup("advcl")
    assert m.counts == [2, 5, len(ds)]  # 100 capped at the 64 images
    assert [fc.out_features for fc in extras["pseudo_heads"].fcs] == m.counts
    assert m.on_epoch_start(1, aug)["pseudo_labels_epoch"] == 1.0
    lab1 = m.labels.clone()
    assert lab1.shape == (3, len(ds))
    assert [len(torch.unique(r)) for r in lab1] == m.counts
    assert m.on_epoch_start(1, aug) == {}  # already computed for this epoch (a resume)
    m.refresh_labels(1)  # the same model gives the same labels (seeded FAISS k-means)
    assert torch.equal(m.labels, lab1)
    m.prepare_batch(np.arange(16))
    out = m.step(fw, model, ds.get_batch(np.arange(16))[0], None, aug,
                 torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and {"supcon", "pseudo_ce"} <= set(out.metrics)
    out.loss.backward()
    assert all(fc.weight.grad is not None for fc in extras["pseudo_heads"].fcs)
    state = m.state_dict()
    m2 = copy.copy(m)
    m2.labels = None
    m2.load_state_dict(state)
    assert torch.equal(m2.labels, lab1) and m2.labels_epoch == 1
    assert m.on_epoch_start(2, aug)["pseudo_labels_epoch"] == 2.0  # every epoch here
    assert m.labels_epoch == 2


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_advcl_attack_mode_and_bn_statistics(mode):
    cfg, m, model, extras, fw, ds, aug = _setup("advcl", f"train.advcl.attack_mode={mode}",
                                                "train.attack.steps=2")
    m.on_epoch_start(1, aug)
    model.train()
    bn = model.encoder.bn1.bns if hasattr(model.encoder, "bn1") else None
    assert bn is not None
    before = {k: v.running_mean.clone() for k, v in bn.items()}
    m.prepare_batch(np.arange(16))
    x, _ = ds.get_batch(np.arange(16))
    calls = []
    real = fw.forward

    def spy(c):
        calls.append([(b, w) for _, b, w in c])
        return real(c)

    fw.forward = spy
    m.step(fw, model, x, None, aug, torch.Generator().manual_seed(0))
    assert calls == [[("pgd", "proj"), ("normal", "proj"), ("normal", "proj"),
                      ("normal", "proj"), ("pgd_ce", "features:pseudo_heads")]]
    # the step's own forward (one call through fw) updates every branch; compare counts
    steps = {k: int(v.num_batches_tracked) for k, v in bn.items()}
    if mode == "train":  # 2 attack steps each through 'pgd' and 'pgd_ce' + the training forward
        assert steps == {"normal": 3 + 3, "pgd": 2 + 1, "pgd_ce": 2 + 1}
    else:  # attacks in eval mode: only the training forward (and none of the fixed views)
        assert steps == {"normal": 3, "pgd": 1, "pgd_ce": 1}
    assert model.training
    assert not torch.equal(before["pgd"], bn["pgd"].running_mean)
