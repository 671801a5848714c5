"""Settings that make the published configs reproduce the published code (issue 11): the RD
attack's start, the selection objective of every method, the STL-10 fine-tuning rows and the
resolved published configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rcs.selection.per_sample import HeadFn
from rcs.selection.validation import RDValidation


@pytest.mark.parametrize("start", ["uniform", "trades"])
def test_rd_attack_start(start):
    """With a zero step size the attack returns its start: x + U(-eps, eps) (uniform) or
    x + 0.001 N(0, 1) (trades, as the published ImageNet-32 ACL / SAT RD attack)."""
    torch.manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(64, 3, 8, 8)  # far from 0 and 1: nothing is clamped
    features = lambda x, stream: x.flatten(1)  # noqa: E731  (a linear encoder)
    head = HeadFn(nn.Linear(3 * 8 * 8, 4))
    eps = 8 / 255
    rdv = RDValidation(features, head, images, eps=eps, steps=1, alpha=0.0, start=start)
    rdv.attack(0)
    delta = rdv.f_adv - rdv.f_nat
    if start == "trades":
        assert delta.std().item() == pytest.approx(0.001, rel=0.05)
        assert delta.mean().abs().item() < 1e-4 and delta.abs().max().item() < 0.0065
    else:
        assert delta.std().item() == pytest.approx(eps / math.sqrt(3), rel=0.05)
        assert delta.abs().max().item() <= eps + 1e-7 and delta.abs().max().item() > 0.95 * eps
    with pytest.raises(ValueError, match="not one of uniform, trades"):
        RDValidation(features, head, images, start="gaussian")


def _ctx(model, data, cfg=None):
    from rcs.selection import SelectionContext

    ds, cand, val = data
    return SelectionContext(ds, cand, val, 0.2, seed=1, model=model, device="cpu", cfg=cfg)


def test_rcs_selection_uses_the_configured_rd_start(model, data):
    """selection.val_attack_start reaches the RD attack of a real selection: the initial RD
    differs between the two starts; an unknown start is refused."""
    from rcs.selection import RCSSelector

    small = {"candidate_batch": 27, "sketch_dim": 32, "rounds": 2, "val_attack_steps": 1}
    rd = {s: RCSSelector(None, val_attack_start=s, **small).select(_ctx(model, data))
          .meta["rd_per_round"][0] for s in ("uniform", "trades")}
    assert rd["uniform"] != rd["trades"]
    with pytest.raises(Exception, match="val_attack_start"):
        RCSSelector(None, val_attack_start="normal")


def test_stl10_finetuning_rows():
    """CIFAR-10 -> STL-10 (PUBLISHED_METHODS.md R3.1): SLF/ALF lr 0.1 at batch 512 for 96 px, lr
    0.01
    at batch 128 for 32 px; DynACL's AFF milestones 10,20 at 96 px; set values still win."""
    from rcs.config.schema import FinetuneConfig
    from rcs.finetune import resolve_mode

    ft = FinetuneConfig()
    for method in ("acl", "dynacl", "air", "dynacl_air", "sat"):
        for mode in ("slf", "alf"):
            s96 = resolve_mode(ft, mode, method, "stl10", image_size=96)
            s32 = resolve_mode(ft, mode, method, "stl10", image_size=32)
            c10 = resolve_mode(ft, mode, method, "cifar10", image_size=32)
            assert (s96.lr, s96.batch_size) == (0.1, 512), (method, mode)
            assert (s32.lr, s32.batch_size) == (0.01, 128), (method, mode)
            assert (s96.epochs, s96.milestones) == (s32.epochs, s32.milestones) == \
                (c10.epochs, c10.milestones)
    assert resolve_mode(ft, "slf", "acl", "stl10").lr == 0.1  # native STL-10 is 96 px
    dyn96 = resolve_mode(ft, "aff", "dynacl", "stl10", image_size=96)
    assert (dyn96.epochs, dyn96.lr, dyn96.batch_size, dyn96.milestones) == (25, 0.1, 128, (10, 20))
    assert resolve_mode(ft, "aff", "dynacl", "stl10", image_size=32).milestones == (15, 20)
    assert resolve_mode(ft, "aff", "dynacl", "cifar10").milestones == (15, 20)
    acl96 = resolve_mode(ft, "aff", "acl", "stl10", image_size=96)
    assert (acl96.epochs, acl96.milestones) == (100, (40, 60))
    ft.slf.lr, ft.aff.milestones = 0.02, [5, 7]
    assert resolve_mode(ft, "slf", "acl", "stl10", image_size=96).lr == 0.02
    assert resolve_mode(ft, "aff", "dynacl", "stl10", image_size=96).milestones == (5, 7)


EXPECTED_SELECTION_LOSS = {"acl": "acl", "dynacl": "acl", "air": "air", "dynacl_air": "air",
                           "sat": "sat", "advcl": "acl", "rocl": "acl", "byorl": "acl",
                           "tikhonov": "acl"}
METHOD_SETS = {"advcl": ["model.bn_names=[normal,pgd,pgd_ce]"], "rocl": ["model.bn_names=[normal]"],
               "byorl": ["model.bn_names=[normal]"],
               "tikhonov": ["model.bn_names=[normal]", "train.tikhonov.lam=1"]}


@pytest.mark.parametrize("method", sorted(EXPECTED_SELECTION_LOSS))
def test_every_selector_takes_the_methods_selection_loss(method):
    """One source of truth: the trainer's method instance, RCS and the gradient baselines all
    resolve the objective from Method.selection_loss(); DynACL-style methods select with their
    loss at plain weights (the published DynACL-RCS selects with plain ACL weights)."""
    from rcs.config import load_config
    from rcs.methods import build_method, method_names, selection_loss_of
    from rcs.selection import RCSSelector
    from rcs.selection.gradient_pass import objective_and_net
    from rcs.selection.settings import SelectorSettings

    assert set(EXPECTED_SELECTION_LOSS) <= set(method_names())
    cfg = load_config(None, [f"train.method={method}", *METHOD_SETS.get(method, [])])
    want = EXPECTED_SELECTION_LOSS[method]
    assert build_method(method, cfg).selection_loss() == want  # the trainer's instance
    assert selection_loss_of(method) == want
    sel = RCSSelector(cfg)
    assert sel.objective == want
    obj = sel._objective(type("N", (), {"bn": ("normal", "pgd")})())
    assert obj.kind == want
    if want == "air":
        assert (obj.w_nat, obj.w_adv) == (1.0, 1.0)  # w = 0 whatever DynACL's schedule says
    if want == "acl":
        assert (obj.w_nat, obj.w_adv) == (0.5, 0.5)
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model

    model = build_model(ModelConfig(width=4, blocks=[1], head_dim=8), classifier=True)
    bobj, _ = objective_and_net(model, SelectorSettings.resolve(cfg))
    assert bobj == obj


def test_dynacl_methods_select_as_their_plain_counterparts(model, data):
    """dynacl selects bitwise as acl, dynacl_air as air (same objective, same draws); air and
    acl differ, so the objective really changes the coreset."""
    from rcs.selection import RCSSelector

    small = {"candidate_batch": 27, "sketch_dim": 32, "rounds": 2, "val_attack_steps": 1}
    cs = {m: RCSSelector(None, method=m, **small).select(_ctx(model, data))
          for m in ("acl", "dynacl", "air", "dynacl_air")}
    assert cs["dynacl_air"].meta["objective"] == "air" and cs["dynacl"].meta["objective"] == "acl"
    assert list(cs["dynacl"].indices) == list(cs["acl"].indices)
    assert list(cs["dynacl_air"].indices) == list(cs["air"].indices)
    assert cs["dynacl_air"].gains == cs["air"].gains
    assert cs["acl"].gains != cs["air"].gains


def test_selection_loss_errors():
    from rcs.errors import ConfigError
    from rcs.methods import selection_loss_of
    from rcs.methods.acl import ACL
    from rcs.methods.base import METHODS, register_method

    with pytest.raises(ConfigError, match="unknown train.method 'simclr'"):
        selection_loss_of("simclr")

    @register_method("acl_with_instance_selection_loss")
    class Bad(ACL):
        def selection_loss(self) -> str:
            return "acl"

    @register_method("acl_selecting_with_mse")
    class Odd(ACL):
        @classmethod
        def selection_loss(cls) -> str:
            return "mse"

    try:
        with pytest.raises(ConfigError, match="must be a classmethod"):
            selection_loss_of("acl_with_instance_selection_loss")
        with pytest.raises(ConfigError, match="'mse', which is not one of acl, air, sat"):
            selection_loss_of("acl_selecting_with_mse")
    finally:
        METHODS.pop("acl_with_instance_selection_loss")
        METHODS.pop("acl_selecting_with_mse")


def test_dynacl_air_config_trains_with_the_published_air(tmp_path):
    """configs/cifar10_dynacl_air_rcs.yaml: DynACL-AIR with the published (faithful) AIR, bicubic
    crops; its tiny version trains with RCS selecting on the AIR loss."""
    import json

    from rcs.cli.main import main
    from rcs.config import load_config
    from tests.test_methods_e2e import COMMON, sets

    cfg = load_config("configs/cifar10_dynacl_air_rcs.yaml", ["data.root=/tmp/x"])
    assert (cfg.train.method, cfg.train.air.variant) == ("dynacl_air", "faithful")
    assert (cfg.train.air.lambda1, cfg.train.air.lambda2, cfg.train.dynacl.period) == (0.5, 0.5, 50)
    assert cfg.augment.interpolation == "bicubic" and cfg.train.lr_schedule == "epoch"
    assert load_config(None).train.air.variant == "faithful"  # the default too
    out = tmp_path / "run"
    assert main(["train", "-c", "configs/tiny/cifar10_dynacl_air_rcs.yaml", "--out", str(out),
                 "--resume", "none", *sets(COMMON)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dynacl_air" and summary["selections"] == 1
    meta = json.loads((out / "coresets" / "epoch_0002.json").read_text())["meta"]
    assert meta["objective"] == "air" and meta["train_method"] == "dynacl_air"


PUBLISHED = ["cifar10_acl_rcs", "cifar10_dynacl_rcs", "cifar10_air_rcs", "cifar10_dynacl_air_rcs",
             "cifar10_advcl_rcs", "cifar10_rocl_rcs", "cifar10_byorl_rcs", "cifar10_tikhonov_rcs",
             "imagenet32_acl_rcs", "imagenet32_sat_rcs"]


def _header(name: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").read_text()
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(lines)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_configs_resolve_to_the_published_settings_and_list_differences(name):
    """Every published config: the epoch lr schedule, and a header that lists each deliberate
    difference of its selection from the published code."""
    from rcs.config import load_config

    cfg = load_config(f"configs/{name}.yaml", ["data.root=/tmp/x"])
    assert cfg.train.lr_schedule == "epoch" and cfg.selection.method == "rcs"
    head = _header(name)
    for needle in ("eta applied once", "granularity", "bf16", "attacked once per selection"):
        assert needle in head, (name, needle)
    # the gains: exact (from cached features) at CIFAR scale, the sketched store at ImageNet's
    said = "count-sketched to 1,024" if cfg.selection.gradients == "sketch" else "exact"
    assert said in head, (name, said)
    if cfg.selection.train_attack_steps != 5 and name.startswith("cifar10"):
        assert "1-step candidate attack" in head, name
    if name.startswith("cifar10") or name == "imagenet32_acl_rcs":
        assert "masked NT-Xent" in head, name
    if name.startswith("cifar10"):  # the small-scale published RCS settings
        assert cfg.selection.rd_distance == "minmax_kl" and cfg.data.val_fraction == 0.01
        assert cfg.selection.val_attack_start == "uniform"
    else:  # the ImageNet-32 / SAT RD attack starts TRADES-style
        assert cfg.selection.rd_distance == "kl" and cfg.selection.val_attack_start == "trades"
        assert cfg.selection.candidate_batch == cfg.train.batch_size
    if name in ("cifar10_acl_rcs", "cifar10_dynacl_rcs", "cifar10_air_rcs",
                "cifar10_dynacl_air_rcs", "imagenet32_acl_rcs"):
        assert cfg.augment.interpolation == "bicubic" and cfg.augment.crop == "resized"
    if name == "imagenet32_sat_rcs":
        assert (cfg.augment.crop, cfg.augment.crop_padding) == ("pad", 4)
        assert cfg.augment.jitter_prob == cfg.augment.grayscale_prob == 0.0
        assert (cfg.selection.warmup_epochs, cfg.selection.every) == (1, 10)
