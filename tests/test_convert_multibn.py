"""convert_multibn: any network's BatchNorms become routed multi-BN layers; model.arch factories."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rcs.config import load_config
from rcs.errors import ConfigError
from rcs.models import (
    ExternalEncoder,
    MultiBatchNorm,
    Routed,
    branch,
    build_model,
    convert_multibn,
    export_encoder,
    revert_multibn,
    single_bn_state_dict,
)
from rcs.utils.checkpoint_io import load_state_dict_strict


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class TinyResNet(nn.Module):
    """A hand-built ResNet-like network as users write them: stem, two blocks, a BN1d neck."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = Block(4, 4, 1)
        self.layer2 = Block(4, 8, 2)
        self.neck = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(8))

    def forward(self, x):
        y = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.neck(F.adaptive_avg_pool2d(y, 1))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet()


FACTORY = f"{__name__}:tiny_resnet"


def n_plain_bns(m: nn.Module) -> int:
    inside = {id(b) for mb in m.modules() if isinstance(mb, MultiBatchNorm)
              for b in mb.bns.values()}
    return sum(isinstance(x, _BatchNorm) and id(x) not in inside for x in m.modules())


def test_every_batchnorm_becomes_multi_bn_with_the_same_function():
    ref = tiny_resnet()
    n = n_plain_bns(ref)
    assert n == 8
    net = convert_multibn(copy.deepcopy(ref), ("normal", "pgd"))
    assert n_plain_bns(net) == 0
    mbns = [m for m in net.modules() if isinstance(m, MultiBatchNorm)]
    assert len(mbns) == n and {m.dim for m in mbns} == {1, 2}
    assert "layer2.short.1.bns.pgd.running_var" in net.state_dict()
    x = torch.rand(4, 3, 8, 8)
    for mode in ("eval", "train"):
        getattr(ref, mode)()
        getattr(net, mode)()
        with torch.no_grad():
            want = ref(x)
            for b in ("normal", "pgd"):  # every branch starts as a copy of the original BN
                assert torch.equal(Routed(net)(x, bn=b), want)
    assert isinstance(convert_multibn(nn.BatchNorm2d(3)), MultiBatchNorm)
    with pytest.raises(ConfigError, match="distinct"):
        convert_multibn(tiny_resnet(), ("pgd", "pgd"))


def test_two_branches_keep_separate_statistics():
    net = Routed(convert_multibn(tiny_resnet(), ("normal", "pgd"))).train()
    stem = net.net.bn1
    conv = net.net.conv1
    xa = torch.rand(8, 3, 8, 8)
    xb = torch.rand(8, 3, 8, 8) * 3 + 1
    with torch.no_grad():
        net(xa, bn="normal")
        after_a = {b: stem.bns[b].running_mean.clone() for b in ("normal", "pgd")}
        net(xb, bn="pgd")
        # independent: the stem BN's running mean moves by momentum 0.1 toward the batch mean
        # of the (shared) conv output, on the routed branch only
        mean_a = F.conv2d(xa, conv.weight, padding=1).mean(dim=(0, 2, 3))
        mean_b = F.conv2d(xb, conv.weight, padding=1).mean(dim=(0, 2, 3))
    torch.testing.assert_close(after_a["normal"], 0.1 * mean_a)
    assert torch.equal(after_a["pgd"], torch.zeros(4))
    torch.testing.assert_close(stem.bns["normal"].running_mean, 0.1 * mean_a)
    torch.testing.assert_close(stem.bns["pgd"].running_mean, 0.1 * mean_b)
    assert int(stem.bns["normal"].num_batches_tracked) == 1
    assert int(stem.bns["pgd"].num_batches_tracked) == 1
    net.eval()
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(net(x, bn="normal"), net(x, bn="pgd"))
    with pytest.raises(ConfigError, match="unknown BN branch 'adv'"):
        net(x, bn="adv")
    with pytest.raises(ConfigError, match="no multi-BN layer"):
        Routed(tiny_resnet())


def test_exported_single_bn_network_equals_the_routed_one_on_its_branch():
    net = Routed(convert_multibn(tiny_resnet(), ("normal", "pgd"))).train()
    with torch.no_grad():
        for b, scale in (("normal", 1.0), ("pgd", 4.0)):
            for _ in range(3):
                net(torch.rand(8, 3, 8, 8) * scale, bn=b)
    net.eval()
    x = torch.rand(5, 3, 8, 8)
    for b in ("normal", "pgd"):
        # the state dict of one branch loads strictly into the user's original, unconverted net
        plain = tiny_resnet()
        load_state_dict_strict(plain, single_bn_state_dict(net.net.state_dict(), b))
        reverted = revert_multibn(copy.deepcopy(net.net), b)
        assert n_plain_bns(reverted) == 8
        with torch.no_grad():
            want = net(x, bn=b)
            assert torch.equal(plain.eval()(x), want)
            assert torch.equal(reverted(x), want)
        with branch(net.net, b), torch.no_grad():  # the context manager routes the same way
            assert torch.equal(net.net(x), want)


def test_model_arch_accepts_a_factory_by_dotted_path(tmp_path):
    cfg = load_config(None, ["model.arch=" + FACTORY, "model.head_dim=8",
                             "model.normalize=cifar10"])
    model = build_model(cfg.model)
    assert isinstance(model.encoder, ExternalEncoder) and model.feature_dim == 8
    assert len(model._mbns) == 8 + 3  # the backbone's 8 BNs + the ACL head's 3
    x = torch.rand(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        exported = export_encoder(model, "pgd")
        assert torch.equal(exported(x), model.features(x, bn="pgd"))
    for bad, msg in (("nosuchpkg.mod:f", "cannot import module"),
                     (f"{__name__}:missing", "has no 'missing'"),
                     (f"{__name__}:FACTORY", "not callable")):
        with pytest.raises(ConfigError, match=msg):
            build_model(load_config(None, ["model.arch=" + bad]).model)
    with pytest.raises(ConfigError, match="dotted path"):
        build_model(load_config(None, ["model.arch=resnet99"]).model)  # the arch registry


def test_acl_with_rcs_trains_a_factory_backbone_and_exports_it(tmp_path):
    """ACL + RCS selection run end to end on the converted user network; the export equals
    the trained model on the pgd branch."""
    from rcs.finetune.export import export_checkpoint
    from rcs.models import load_exported
    from rcs.train.trainer import Trainer

    cfg = load_config(None, [
        "model.arch=" + FACTORY, "model.head_dim=8", "data.name=synthetic",
        "data.synthetic_size=48", "data.val_fraction=0.2", "data.image_size=16",
        "train.batch_size=8", "train.epochs=2", "train.attack.steps=1",
        "train.channels_last=false", "selection.method=rcs", "selection.warmup_epochs=1",
        "selection.every=1", "selection.fraction=0.5", "selection.rounds=2",
        "selection.candidate_batch=8", "selection.val_attack_steps=1", "device=cpu",
        f"out_dir={tmp_path}"])
    trainer = Trainer(cfg, resume="none")
    summary = trainer.fit()
    assert summary["selections"] == 1
    files = export_checkpoint(tmp_path / "checkpoint.pt", tmp_path / "export")
    net, meta = load_exported(files["json"])
    assert meta["arch"] == FACTORY
    model = trainer.model.eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), model.features(x, bn="pgd"))


def test_torchvision_resnet18_converts_and_routes():
    try:  # CUDA-only torchvision wheels fail on a CPU torch with errors other than ImportError
        import torchvision.models as tv
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torchvision does not import here ({type(e).__name__}: {e})")
    torch.manual_seed(0)
    ref = tv.resnet18(num_classes=10).eval()
    net = Routed(convert_multibn(copy.deepcopy(ref)))
    assert n_plain_bns(net) == 0 and len(net._mbns) == 20
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, bn="pgd"), ref(x))
        net.train()(torch.rand(4, 3, 32, 32) * 2, bn="pgd")
        net.eval()
        plain = tv.resnet18(num_classes=10)
        plain.load_state_dict(single_bn_state_dict(net.net.state_dict(), "pgd"))
        assert torch.equal(plain.eval()(x), net(x, bn="pgd"))
        assert torch.equal(net(x, bn="normal"), ref(x))
