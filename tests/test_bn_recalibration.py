"""BN running statistics re-estimated on full-data batches (rcs.train.bn)."""

from __future__ import annotations

import torch
from torch import nn

from rcs.config.schema import ModelConfig
from rcs.models import build_model
from rcs.train.bn import recalibrate_bn


def test_statistics_are_the_cumulative_average_of_batch_moments_and_unused_layers_kept():
    torch.manual_seed(0)
    used, unused = nn.BatchNorm1d(3, momentum=0.1), nn.BatchNorm1d(3)
    unused.running_mean.fill_(7.0)
    model = nn.ModuleDict({"a": used, "b": unused})
    batches = [torch.randn(16, 3) * (i + 1) + i for i in range(4)]
    n = recalibrate_bn(model, [lambda x=x: used(x) for x in batches])
    assert n == 1 and used.momentum == 0.1 and model.training
    mean = torch.stack([x.mean(0) for x in batches]).mean(0)
    var = torch.stack([x.var(0, unbiased=True) for x in batches]).mean(0)
    torch.testing.assert_close(used.running_mean, mean)
    torch.testing.assert_close(used.running_var, var)
    assert int(used.num_batches_tracked) == 0  # counters as they were
    assert torch.all(unused.running_mean == 7.0)  # never reached: kept


def test_multi_bn_model_branches_recalibrated_separately():
    torch.manual_seed(1)
    m = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=8)).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.rand(8, 3, 16, 16)
    recalibrate_bn(m, [lambda: m(x, "normal")])
    after = m.state_dict()
    stats = [k for k in before if "running_mean" in k]
    assert all(not torch.equal(before[k], after[k]) for k in stats if ".bns.normal." in k)
    assert all(torch.equal(before[k], after[k]) for k in before if ".bns.pgd." in k)
    assert not m.training  # mode restored
    # weights untouched
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_trainer_recalibrates_after_coreset_epochs_from_full_data_batches(tmp_path):
    """With train.bn_recalibration, the BN statistics a run ends with are those of the full-data
    batches it draws (the same whatever the coreset), not of its coreset batches; weights and
    everything else follow the same schedule."""
    import sys

    from rcs.config import load_config
    from rcs.train.trainer import Trainer

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_trainer import TINY

    def run(out, *extra):
        cfg = load_config(None, TINY + [f"out_dir={tmp_path / out}", "train.epochs=2",
                                        *extra])
        t = Trainer(cfg, resume="none")
        t.fit()
        return t

    on = run("on", "train.bn_recalibration=2")
    again = run("again", "train.bn_recalibration=2")
    off = run("off", "train.bn_recalibration=0")
    sd_on, sd_again, sd_off = (t.model.state_dict() for t in (on, again, off))
    assert all(torch.equal(sd_on[k], sd_again[k]) for k in sd_on)  # seeded: repeatable
    stats = [k for k in sd_on if k.endswith("running_mean")]
    assert any(not torch.equal(sd_on[k], sd_off[k]) for k in stats)
    weights = [k for k in sd_on if k.endswith("weight") and "bns" not in k]
    assert all(torch.equal(sd_on[k], sd_off[k]) for k in weights)  # one coreset epoch, last
    # the first BN layer's clean-branch statistics depend only on the weights and the seeded
    # full-data batches (no attack runs before them): recalibrating again gives them exactly
    assert on.progress.epoch == 3
    first = ("encoder.bn1.bns.normal.running_mean", "encoder.bn1.bns.normal.running_var")
    before = {k: sd_on[k].clone() for k in first}
    on._recalibrate_bn(2)
    after = on.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in first)
    assert not all(torch.equal(before[k], sd_off[k]) for k in first)
