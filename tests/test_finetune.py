"""rcs.finetune: protocol, augmentation, SLF / ALF / AFF, export, strict loading, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcs.config import load_config
from rcs.errors import CheckpointError, ConfigError
from rcs.finetune import (
    crop_flip,
    finetune_aff,
    finetune_linear,
    load_classifier,
    load_pretrained,
    lr_at,
    resolve_mode,
    save_classifier,
)
from rcs.finetune.protocol import ModeSettings
from rcs.utils.checkpoint_io import save_checkpoint
from tests.conftest import pretraining_checkpoint


def settings(mode: str, epochs: int = 1, lr: float = 0.05, bs: int = 32) -> ModeSettings:
    return ModeSettings(mode, epochs, lr, bs, (10, 20), 2e-4, 0.9, "test")


@pytest.fixture()
def pretrained(tmp_path):
    """A tiny 'pretraining' checkpoint whose two BN branches hold different statistics."""
    return pretraining_checkpoint(tmp_path, ["eval.pgd.steps=2"], counts=False)


def dataset(cfg):
    from rcs.data import build_dataset

    ds = build_dataset(cfg.data)
    return ds, np.arange(len(ds))


# ------------------------------------------------------------------ protocol
def test_protocol_per_method_and_no_carry_over():
    from rcs.config.schema import FinetuneConfig

    ft = FinetuneConfig()
    acl = {m: resolve_mode(ft, m, "acl", "cifar10") for m in ("slf", "alf", "aff")}
    assert (acl["slf"].epochs, acl["slf"].lr, acl["slf"].batch_size,
            acl["slf"].milestones) == (25, 0.01, 512, (10, 20))
    assert (acl["aff"].epochs, acl["aff"].lr, acl["aff"].batch_size,
            acl["aff"].milestones) == (100, 0.1, 128, (40, 60))
    assert resolve_mode(ft, "aff", "dynacl").epochs == 25
    assert resolve_mode(ft, "aff", "dynacl").milestones == (15, 20)
    assert resolve_mode(ft, "slf", "air").lr == 0.005
    assert resolve_mode(ft, "slf", "sat").epochs == 25
    # DynACL-AIR: SLF runs 5 epochs; ALF and AFF keep their own (the scripts carried 5 over)
    assert [resolve_mode(ft, m, "dynacl_air").epochs for m in ("slf", "alf", "aff")] == [5, 25, 25]
    assert resolve_mode(ft, "slf", "acl", "cifar100").lr == 0.05
    assert resolve_mode(ft, "aff", "acl", "cifar100").lr == 0.1
    for s in acl.values():
        assert s.weight_decay == 2e-4 and s.momentum == 0.9


def test_protocol_overrides_apply_to_one_mode_only():
    cfg = load_config(None, ["finetune.slf.epochs=3", "finetune.slf.milestones=[1]",
                             "finetune.protocol=dynacl"])
    slf = resolve_mode(cfg.finetune, "slf", "acl")
    alf = resolve_mode(cfg.finetune, "alf", "acl")
    assert (slf.epochs, slf.milestones, slf.lr, slf.protocol) == (3, (1,), 0.01, "dynacl")
    assert (alf.epochs, alf.milestones) == (25, (10, 20))
    none = load_config(None, ["finetune.protocol=none", "finetune.slf.epochs=2"])
    with pytest.raises(ConfigError, match="finetune.slf.lr is not set"):
        resolve_mode(none.finetune, "slf", "acl")
    with pytest.raises(ConfigError, match="no published fine-tuning protocol"):
        resolve_mode(load_config(None, []).finetune, "slf", "mystery")


def test_lr_decays_like_multisteplr():
    s = ModeSettings("slf", 25, 0.1, 8, (10, 20), 0.0, 0.9, "x")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10, 20], gamma=0.1)
    for epoch in range(1, 26):
        assert lr_at(s, epoch) == pytest.approx(opt.param_groups[0]["lr"]), epoch
        opt.step()
        sched.step()


# ------------------------------------------------------------------ augmentation
def test_crop_flip_outputs_are_padded_crops_or_their_mirrors():
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = crop_flip(x, padding=2, generator=g)
    xf = x.float() / 255
    padded = torch.nn.functional.pad(xf, (2, 2, 2, 2))
    seen = set()
    for i in range(len(x)):
        hits = [(t, left, f) for t in range(5) for left in range(5) for f in (0, 1)
                if torch.equal(out[i], (lambda c, f: c.flip(-1) if f else c)(
                    padded[i, :, t:t + 8, left:left + 8], f))]
        assert hits, f"image {i} is not a padded crop of its input"
        seen.update(hits)
    assert len({h[2] for h in seen}) == 2 and len({h[:2] for h in seen}) > 3
    assert torch.equal(crop_flip(x, padding=0, flip_prob=0.0), xf)
    again = crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


# ------------------------------------------------------------------ SLF / ALF
def test_slf_trains_only_the_head_on_the_frozen_pgd_encoder(pretrained, tmp_path):
    path, cfg, model = pretrained
    pre = load_pretrained(path)
    ds, idx = dataset(cfg)
    clf, fit = finetune_linear(pre, cfg, settings("slf", epochs=3, lr=0.01), ds, idx, 10,
                               torch.device("cpu"), tmp_path / "slf")
    assert len(fit.losses) == 3 and fit.losses[-1] < fit.losses[0]
    x = torch.rand(5, 3, 32, 32)
    model.eval()
    with torch.no_grad():  # the encoder is exactly the pretrained 'pgd' branch, BN stats too
        assert torch.allclose(clf.encoder(x), model.features(x, "pgd"), atol=1e-6)
        assert not torch.allclose(clf.encoder(x), model.features(x, "normal"), atol=1e-3)
    assert clf.fc.weight.abs().sum() > 0
    assert not clf.training
    out = tmp_path / "slf" / "classifier.pt"
    save_classifier(out, clf, cfg.model, 10, {"mode": "slf"})
    back, meta = load_classifier(out)
    assert meta["mode"] == "slf" and meta["num_classes"] == 10
    with torch.no_grad():
        assert torch.equal(back(x), clf(x))


def test_alf_trains_on_pgd10_examples_against_the_eval_mode_classifier(pretrained, tmp_path,
                                                                       monkeypatch):
    import rcs.finetune.linear as linear
    from rcs.attacks import pgd as real_pgd

    calls = []

    def spy(loss_fn, x, eps, alpha, steps, **kw):
        calls.append((eps, alpha, steps, kw["random_start"], kw["model"]))
        x_adv = real_pgd(loss_fn, x, eps, alpha, steps, **kw)
        assert (x_adv - x).abs().max() <= eps + 1e-6 and not torch.equal(x_adv, x)
        return x_adv

    monkeypatch.setattr(linear, "pgd", spy)
    path, cfg, _ = pretrained
    ds, idx = dataset(cfg)
    clf, fit = finetune_linear(load_pretrained(path), cfg, settings("alf", epochs=1), ds, idx,
                               10, torch.device("cpu"), tmp_path / "alf")
    assert len(calls) == 2  # 64 images / batch 32
    for eps, alpha, steps, rs, m in calls:
        assert (eps, alpha, steps, rs) == (pytest.approx(8 / 255), pytest.approx(2 / 255), 10,
                                           True)
        assert m is clf
    with monkeypatch.context() as mp:  # SLF never attacks
        mp.setattr(linear, "pgd", lambda *a, **k: pytest.fail("SLF must not attack"))
        finetune_linear(load_pretrained(path), cfg, settings("slf"), ds, idx, 10,
                        torch.device("cpu"), tmp_path / "slf")


# ------------------------------------------------------------------ AFF
def test_aff_export_equals_the_dual_bn_model_on_the_pgd_branch(pretrained, tmp_path):
    path, cfg, model0 = pretrained
    ds, idx = dataset(cfg)
    clf, fit, model = finetune_aff(load_pretrained(path), cfg, settings("aff", epochs=1, bs=16),
                                   ds, idx, 10, torch.device("cpu"), tmp_path / "aff")
    assert len(fit.losses) == 1 and np.isfinite(fit.losses[0])
    x = torch.rand(6, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(clf(x), model.logits(x, "pgd"), atol=1e-5)
        assert not torch.allclose(clf(x), model.logits(x, "normal"), atol=1e-4)
    # the whole network trained: both BN branches saw their own inputs, convs moved
    sd0, sd = model0.state_dict(), model.state_dict()
    for b in ("normal", "pgd"):
        key = next(k for k in sd if k.endswith(f"bns.{b}.running_mean"))
        assert not torch.allclose(sd[key], sd0[key]), b
    conv = next(k for k in sd if k.startswith("encoder.") and k.endswith("conv1.weight"))
    assert not torch.allclose(sd[conv], sd0[conv])
    save_classifier(tmp_path / "c.pt", clf, cfg.model, 10, {"mode": "aff"})
    back, _ = load_classifier(tmp_path / "c.pt")
    with torch.no_grad():
        assert torch.allclose(back(x), model.logits(x, "pgd"), atol=1e-5)


def test_aff_attack_is_the_trades_kl_attack(pretrained, tmp_path, monkeypatch):
    import rcs.finetune.aff as aff
    from rcs.attacks import pgd as real_pgd

    calls = []

    def spy(loss_fn, x, eps, alpha, steps, **kw):
        calls.append((steps, kw["random_start"], kw["trades_start"], kw["model"]))
        return real_pgd(loss_fn, x, eps, alpha, steps, **kw)

    monkeypatch.setattr(aff, "pgd", spy)
    path, cfg, _ = pretrained
    ds, idx = dataset(cfg)
    _, _, model = finetune_aff(load_pretrained(path), cfg, settings("aff", bs=32), ds, idx, 10,
                               torch.device("cpu"), tmp_path / "aff")
    assert calls and all(c[:3] == (10, False, True) and c[3] is model for c in calls)


# ------------------------------------------------------------------ strict loading, resume
def test_checkpoint_with_missing_keys_fails_loudly(pretrained, tmp_path, capsys):
    from rcs.cli.main import main
    from rcs.utils.checkpoint_io import load_checkpoint

    path, cfg, _ = pretrained
    state = load_checkpoint(path)
    dropped = next(k for k in state["model"] if k.endswith("bns.pgd.running_var"))
    del state["model"][dropped]
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {k: v for k, v in state.items() if k not in ("format", "version")})
    ds, idx = dataset(cfg)
    for fn in (finetune_linear, finetune_aff):
        with pytest.raises(CheckpointError, match="missing keys"):
            fn(load_pretrained(bad), cfg, settings("slf"), ds, idx, 10, torch.device("cpu"),
               tmp_path / "x")
    assert main(["finetune", "--checkpoint", str(bad), "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert "missing keys" in err and dropped[len("encoder."):] in err
    # a fine-tuned classifier with a missing key is refused as well
    clf, _ = finetune_linear(load_pretrained(path), cfg, settings("slf"), ds, idx, 10,
                             torch.device("cpu"), tmp_path / "ok")
    out = save_classifier(tmp_path / "clf.pt", clf, cfg.model, 10, {})
    st = load_checkpoint(out)
    st["classifier"].pop("fc.bias")
    save_checkpoint(out, {k: v for k, v in st.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="fc.bias"):
        load_classifier(out)


def test_interrupted_fine_tuning_resumes_to_the_same_head(pretrained, tmp_path, monkeypatch):
    import rcs.finetune.linear as linear

    path, cfg, _ = pretrained
    ds, idx = dataset(cfg)
    s = settings("alf", epochs=3, lr=0.2)
    ref, _ = finetune_linear(load_pretrained(path), cfg, s, ds, idx, 10, torch.device("cpu"),
                             tmp_path / "ref")
    real_step = linear.linear_step
    count = {"n": 0}

    def dying_step(*a, **k):
        step = real_step(*a, **k)

        def wrapped(x, y, g):
            count["n"] += 1
            if count["n"] == 4:  # epoch 2, batch 2
                raise KeyboardInterrupt
            return step(x, y, g)
        return wrapped

    monkeypatch.setattr(linear, "linear_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        finetune_linear(load_pretrained(path), cfg, s, ds, idx, 10, torch.device("cpu"),
                        tmp_path / "run")
    monkeypatch.setattr(linear, "linear_step", real_step)
    clf, fit = finetune_linear(load_pretrained(path), cfg, s, ds, idx, 10, torch.device("cpu"),
                               tmp_path / "run")
    assert fit.resumed_from == 2 and len(fit.losses) == 3
    assert torch.equal(clf.fc.weight, ref.fc.weight) and torch.equal(clf.fc.bias, ref.fc.bias)
    with pytest.raises(CheckpointError, match="other settings"):
        finetune_linear(load_pretrained(path), cfg, settings("alf", epochs=4), ds, idx, 10,
                        torch.device("cpu"), tmp_path / "run")


def test_a_state_from_another_pretrained_model_is_never_resumed(pretrained, tmp_path):
    from rcs.utils.checkpoint_io import load_checkpoint

    path, cfg, _ = pretrained
    ds, idx = dataset(cfg)
    s = settings("slf", epochs=1)
    finetune_linear(load_pretrained(path), cfg, s, ds, idx, 10, torch.device("cpu"),
                    tmp_path / "run")
    state = load_checkpoint(path)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    other = tmp_path / "other.pt"
    save_checkpoint(other, {k: v for k, v in state.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="another pretrained model"):
        finetune_linear(load_pretrained(other), cfg, s, ds, idx, 10, torch.device("cpu"),
                        tmp_path / "run")
    _, fit = finetune_linear(load_pretrained(other), cfg, s, ds, idx, 10, torch.device("cpu"),
                             tmp_path / "run", resume=False)
    assert fit.resumed_from == 0 and (tmp_path / "run" / "state.pt.prev").is_file()
