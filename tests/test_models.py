"""rcs.models: multi-BN routing, single-BN export equivalence, parameter counts, strict loading."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rcs.config.schema import ModelConfig
from rcs.errors import CheckpointError, ConfigError
from rcs.models import (
    ARCHS,
    HEADS,
    MultiBatchNorm,
    Normalize,
    branch,
    build_model,
    build_normalize,
    export_classifier,
    export_encoder,
    load_state_dict_strict,
    multi_bn_layers,
    plain_bn,
    set_branch,
    single_bn_state_dict,
)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TINY = {
    "resnet": ModelConfig(arch="resnet18", width=4, blocks=[2, 1], head_dim=8, num_classes=3),
    "bottleneck": ModelConfig(arch="resnet50", width=2, blocks=[1, 1], head_dim=8,
                              num_classes=3),
    "wrn": ModelConfig(arch="wrn", depth=10, widen=2, width=16, head="mlp2", head_dim=8,
                       num_classes=3),
}


def tiny(kind: str = "resnet", classifier: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(TINY[kind], classifier=classifier)


def randomize_bn(model: nn.Module, seed: int = 1) -> None:
    """Give every branch of every multi-BN layer its own random affine and running stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in multi_bn_layers(model):
            for bn in m.bns.values():
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.5)
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) * 1.5 + 0.5)


# ---------------------------------------------------------------- multi-BN routing

def test_multibn_running_stats_follow_own_branch_only() -> None:
    mbn = MultiBatchNorm(3, ["normal", "pgd"]).double().train()
    g = torch.Generator().manual_seed(0)
    x_pos = torch.randn(32, 3, 4, 4, generator=g, dtype=torch.float64) + 3
    x_neg = torch.randn(32, 3, 4, 4, generator=g, dtype=torch.float64) - 3
    pgd0 = {k: v.clone() for k, v in mbn.bns["pgd"].state_dict().items()}
    mbn.active = "normal"
    mbn(x_pos)
    n = mbn.bns["normal"]
    # PyTorch BN: running = (1 - 0.1) * running + 0.1 * batch stat (unbiased variance)
    torch.testing.assert_close(n.running_mean, 0.1 * x_pos.mean((0, 2, 3)))
    torch.testing.assert_close(n.running_var, 0.9 + 0.1 * x_pos.var((0, 2, 3), unbiased=True))
    assert (n.running_mean > 0.2).all()
    for k, v in mbn.bns["pgd"].state_dict().items():
        assert torch.equal(v, pgd0[k]), k
    normal1 = {k: v.clone() for k, v in n.state_dict().items()}
    mbn.active = "pgd"
    mbn(x_neg)
    torch.testing.assert_close(mbn.bns["pgd"].running_mean, 0.1 * x_neg.mean((0, 2, 3)))
    assert (mbn.bns["pgd"].running_mean < -0.2).all()
    for k, v in n.state_dict().items():
        assert torch.equal(v, normal1[k]), k


def test_model_routing_updates_only_chosen_branch() -> None:
    model = tiny().double().train()
    seen = {}
    model.encoder.conv1.register_forward_hook(lambda m, i, o: seen.__setitem__("conv", o))
    x_pos = torch.rand(8, 3, 8, 8, dtype=torch.float64) * 0.5 + 0.5
    x_neg = torch.rand(8, 3, 8, 8, dtype=torch.float64) * 0.5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(x_pos, bn="normal")
    after = model.state_dict()
    expect = 0.1 * seen["conv"].mean((0, 2, 3))
    torch.testing.assert_close(model.encoder.bn1.bns["normal"].running_mean, expect)
    for k, v in after.items():
        if ".bns.pgd." in k:
            assert torch.equal(v, before[k]), k
        elif ".bns.normal.running_mean" in k:
            assert not torch.equal(v, before[k]), k
    mid = {k: v.clone() for k, v in after.items()}
    model(x_neg, bn="pgd")
    for k, v in model.state_dict().items():
        if ".bns.normal." in k:
            assert torch.equal(v, mid[k]), k
        elif ".bns.pgd.running_mean" in k:
            assert not torch.equal(v, mid[k]), k
    model.eval()
    z_n, z_p = model(x_pos, bn="normal"), model(x_pos, bn="pgd")
    assert (z_n - z_p).abs().max() > 1e-3


def test_unknown_branch_and_context_manager() -> None:
    model = tiny()
    x = torch.rand(2, 3, 8, 8)
    for call in (lambda: model(x, bn="adv"), lambda: model.features(x, "adv"),
                 lambda: set_branch(model, "adv"), lambda: export_classifier(model, "adv")):
        with pytest.raises(ConfigError, match="'normal', 'pgd'"):
            call()
    set_branch(model, "normal")
    with branch(model, "pgd"):
        assert all(m.active == "pgd" for m in multi_bn_layers(model))
    assert all(m.active == "normal" for m in multi_bn_layers(model))
    twin = copy.deepcopy(model)  # the cached layer list must follow the copy
    twin(x, bn="pgd")
    assert all(m.active == "pgd" for m in multi_bn_layers(twin))
    assert all(m.active == "normal" for m in multi_bn_layers(model))
    with pytest.raises(ConfigError):
        MultiBatchNorm(4, ["a", "a"])
    with pytest.raises(ConfigError):
        MultiBatchNorm(4, ["a.b"])


# ---------------------------------------------------------------- export equivalence

@pytest.mark.parametrize("kind", ["resnet", "bottleneck", "wrn"])
def test_export_matches_branch(kind: str) -> None:
    model = tiny(kind).double()
    randomize_bn(model)
    model.eval()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for b, other in (("pgd", "normal"), ("normal", "pgd")):
        clf = export_classifier(model, b)
        assert not any(isinstance(m, MultiBatchNorm) for m in clf.modules())
        assert not any(".bns." in k or k.startswith("head") for k in clf.state_dict())
        out = clf(x)
        torch.testing.assert_close(out, model.logits(x, b), atol=1e-10, rtol=0)
        torch.testing.assert_close(export_encoder(model, b)(x), model.features(x, b),
                                   atol=1e-10, rtol=0)
        assert (out - model.logits(x, other)).abs().max() > 1e-3


def test_export_fc_choices_and_independence() -> None:
    model = tiny(classifier=False).eval()
    x = torch.rand(2, 3, 8, 8)
    zero = export_classifier(model, "pgd", num_classes=5)
    assert zero(x).shape == (2, 5) and torch.equal(zero(x), torch.zeros(2, 5))
    fc = nn.Linear(model.feature_dim, 4)
    clf = export_classifier(model, "pgd", fc=fc)
    torch.testing.assert_close(clf(x), fc(model.features(x, "pgd")))
    with pytest.raises(ConfigError, match="num_classes"):
        export_classifier(model, "pgd")
    with pytest.raises(ConfigError, match="inputs"):
        export_classifier(model, "pgd", fc=nn.Linear(model.feature_dim + 1, 2))
    with torch.no_grad():
        clf.encoder.conv1.weight.add_(1.0)
        clf.encoder.bn1.running_mean.add_(1.0)
    assert not torch.equal(clf.encoder.conv1.weight, model.encoder.conv1.weight)
    assert not torch.equal(clf.encoder.bn1.running_mean,
                           model.encoder.bn1.bns["pgd"].running_mean)


def test_single_bn_state_dict_mapping() -> None:
    model = tiny()
    sd = model.state_dict()
    out = single_bn_state_dict(sd, "pgd")
    assert out["encoder.layer1.0.bn1.weight"] is sd["encoder.layer1.0.bn1.bns.pgd.weight"]
    assert out["encoder.conv1.weight"] is sd["encoder.conv1.weight"]
    assert not any(".bns." in k for k in out)
    n_multi = sum(".bns." in k for k in sd)
    assert len(out) == len(sd) - n_multi // 2
    with pytest.raises(CheckpointError, match="adv"):
        single_bn_state_dict(sd, "adv")


# ---------------------------------------------------------------- parameter counts

def resnet_basic_count(width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)
                       ) -> tuple[int, int]:
    """(conv params, BN affine params) of a CIFAR-stem BasicBlock ResNet without fc."""
    conv, bn = 3 * width * 9, 2 * width  # stem 3x3 conv, no bias + BN
    cin = width
    for i, n in enumerate(blocks):
        c = width * 2 ** i
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            conv += 9 * cin * c + 9 * c * c
            bn += 2 * c + 2 * c
            if stride != 1 or cin != c:
                conv, bn = conv + cin * c, bn + 2 * c  # 1x1 downsample conv + BN
            cin = c
    return conv, bn


def resnet_bottleneck_count(width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> int:
    total, cin = 3 * width * 9 + 2 * width, width
    for i, n in enumerate(blocks):
        p = width * 2 ** i
        for j in range(n):
            total += cin * p + 2 * p + 9 * p * p + 2 * p + p * 4 * p + 2 * 4 * p
            if (i > 0 and j == 0) or cin != 4 * p:
                total += cin * 4 * p + 2 * 4 * p
            cin = 4 * p
    return total


def wrn_count(depth: int = 28, k: int = 10) -> int:
    """Pre-activation WRN without fc: stem conv, blocks (bn1, conv1, bn2, conv2, 1x1), final BN."""
    n, total, cin = (depth - 4) // 6, 3 * 16 * 9, 16
    for i in range(3):
        c = 16 * k * 2 ** i
        for j in range(n):
            total += 2 * cin + 9 * cin * c + 2 * c + 9 * c * c
            if cin != c or (i > 0 and j == 0):
                total += cin * c
            cin = c
    return total + 2 * cin


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet18_parameter_count() -> None:
    conv, bn = resnet_basic_count()
    assert conv + bn == 11_168_832  # torchvision's 11,689,512 - fc 513,000 - (7x7 - 3x3 stem) 7,680
    cfg = ModelConfig(arch="resnet18")
    enc = ARCHS["resnet18"](cfg, plain_bn)
    assert enc.feature_dim == 512 and count(enc) == conv + bn
    model = build_model(cfg)  # two BN branches: one extra copy of every BN affine
    assert count(model.encoder) == conv + 2 * bn
    assert count(export_encoder(model, "pgd")) == conv + bn
    d = 512
    assert count(model.head) == 3 * d * d + d + 2 * (3 * 2 * d)
    assert count(HEADS["acl3"](d, d, plain_bn)) == 3 * d * d + d + 3 * 2 * d
    assert model.head.fc2.bias is None and model.head.fc3.bias is None


def test_resnet50_and_wrn28_10_parameter_counts() -> None:
    enc = ARCHS["resnet50"](ModelConfig(arch="resnet50"), plain_bn)
    assert enc.feature_dim == 2048 and count(enc) == resnet_bottleneck_count()
    assert count(enc) == 23_500_352  # torchvision 25,557,032 - fc 2,049,000 - stem 7,680
    wrn = ARCHS["wrn28_10"](ModelConfig(arch="wrn28_10"), plain_bn)
    assert wrn.feature_dim == 640 and count(wrn) == wrn_count(28, 10)
    assert abs(count(wrn) - 36.5e6) < 0.1e6
    head = HEADS["mlp2"](640, 640, plain_bn)
    assert count(head) == 2 * 640 * 640 + 640 + 2 * 2 * 640 and head.fc2.bias is None


# ---------------------------------------------------------------- strict loading

def test_strict_loading_errors_name_the_key() -> None:
    enc = export_encoder(tiny(), "pgd")
    sd = enc.state_dict()
    key = "layer1.0.bn1.running_mean"
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(CheckpointError, match=re.escape(key)):
        load_state_dict_strict(enc, missing)
    extra = dict(sd, **{"layer1.0.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=re.escape("layer1.0.extra.weight")):
        load_state_dict_strict(enc, extra)
    bad = dict(sd, **{"conv1.weight": torch.zeros(1, 1, 1, 1)})
    with pytest.raises(CheckpointError, match=re.escape("conv1.weight")):
        load_state_dict_strict(enc, bad)
    model, other = tiny(seed=0).eval(), tiny(seed=5).eval()
    load_state_dict_strict(other, model.state_dict())
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(other(x, "pgd"), model(x, "pgd"))
    with pytest.raises(CheckpointError, match="bns.pgd"):
        load_state_dict_strict(build_model(ModelConfig(arch="resnet18", width=4, blocks=[2, 1],
                                                       head_dim=8, bn_names=["normal"])),
                               model.state_dict())


# ---------------------------------------------------------------- normalisation, gradients

def test_normalize_formula_and_first_conv_input() -> None:
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    mean, std = IMAGENET
    got = Normalize(mean, std).double()(x)
    for c in range(3):
        torch.testing.assert_close(got[:, c], (x[:, c] - mean[c]) / std[c])
    assert isinstance(build_normalize("none"), nn.Identity)
    with pytest.raises(ConfigError):
        build_normalize("imagenet1k")
    model = tiny().double().eval()
    seen = {}
    model.encoder.conv1.register_forward_hook(lambda m, i, o: seen.update(i=i[0], o=o))
    img = torch.full((1, 3, 6, 6), 0.3, dtype=torch.float64)
    model.features(img, "pgd")
    manual = torch.stack([(0.3 - mean[c]) / std[c] * torch.ones(6, 6, dtype=torch.float64)
                          for c in range(3)])[None]
    torch.testing.assert_close(seen["i"], manual)
    torch.testing.assert_close(seen["o"], F.conv2d(manual, model.encoder.conv1.weight, padding=1))


def test_input_gradient_matches_finite_difference() -> None:
    model = tiny("wrn").double()
    randomize_bn(model)
    clf = export_classifier(model, "pgd")
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=g).requires_grad_(True)
    d = torch.randn(x.shape, dtype=torch.float64, generator=g)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return (clf(inp) ** 2).sum()

    f(x).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    h = 1e-6
    with torch.no_grad():
        fd = (f(x + h * d) - f(x - h * d)) / (2 * h)
    torch.testing.assert_close((x.grad * d).sum(), fd, rtol=1e-5, atol=1e-8)
    model.train()
    xt = torch.rand(4, 3, 8, 8).double().requires_grad_(True)
    model(xt, "pgd").sum().backward()
    assert torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["resnet", "wrn"])
def test_channels_last(kind: str) -> None:
    model = tiny(kind)
    randomize_bn(model)
    model.eval()
    x = torch.rand(2, 3, 8, 8)
    ref = model(x, "pgd")
    model = model.to(memory_format=torch.channels_last)
    xc = x.to(memory_format=torch.channels_last).requires_grad_(True)
    out = model(xc, "pgd")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if torch.get_num_threads() == 1:  # torch 2.13's CPU channels_last backward segfaults on
        return  # one thread; the trainer uses channels_last on CUDA only (train.channels_last)
    out.sum().backward()
    assert xc.grad is not None and torch.isfinite(xc.grad).all()


def test_head_none_and_logits_without_classifier() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=4, blocks=[1], head="none")).eval()
    assert model.head is None and model.out_dim == model.feature_dim == 4
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(model(x, "pgd"), model.features(x, "pgd"))
    with pytest.raises(ConfigError, match="classifier"):
        model.logits(x, "pgd")
    wrn = tiny("wrn")
    assert wrn.feature_dim == 32 and wrn.out_dim == 8  # base 16*16//64 = 4, widen 2: 8, 16, 32
