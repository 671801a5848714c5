"""The survey-family methods as trainer methods: each step's loss is the pure loss of its
forward outputs, the AdCo / CaCo memory update after a step is the closed-form (autograd)
gradient step, their bank starts from encoded images and resumes exactly, and the layer-wise
contrastive option adds α_k times the method's loss on stage projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rcs.config import load_config
from rcs.data import to_float
from rcs.errors import ConfigError
from rcs.losses import (
    ainfonce_rocl_loss,
    clae_loss,
    hcl_loss,
    ifm_loss,
    mochi_loss,
    nt_xent,
    rocl_nt_xent,
)
from rcs.utils.checkpoint_io import load_checkpoint
from tests.conftest import FAMILY_METHODS, METHOD_SETS, StopAfter
from tests.conftest import METHOD_TINY as TINY
from tests.conftest import method_cfg as cfg_for
from tests.conftest import method_setup as setup

SETS = {m: METHOD_SETS[m] for m in FAMILY_METHODS}


class Spy:
    """Records the calls and outputs of a MultiForward."""

    def __init__(self, fw):
        self.fw, self.calls, self.outs = fw, [], []

    def __call__(self, calls):
        out = self.fw(calls)
        self.calls.append(calls)
        self.outs.append(out)
        return out


def expected_loss(method: str, cfg, m, outs):
    t = cfg.train
    if method == "clae":
        z1, z2 = outs[0].chunk(2)
        return clae_loss(z1, z2, outs[1], t.temperature, 0.7)
    if method == "ifm":
        return ifm_loss(outs[0], t.temperature, 0.2, 0.5)
    if method == "hcl":
        return hcl_loss(outs[0], t.temperature, 0.2, 0.5)
    if method == "mochi":
        return mochi_loss(outs[0], m.draw, t.temperature, 6)
    if method == "rush":
        return nt_xent(outs[0], t.temperature)
    if method == "aacl":
        return (hcl_loss(outs[0], t.temperature, 0.12, 1.0)
                + hcl_loss(outs[1], t.temperature, 0.12, 1.0)) / 2
    if method == "arocl":
        z1, z2, za = outs[0].chunk(3)
        return (ainfonce_rocl_loss([z1, z2, za], t.temperature, "iphn", 0.2, 1.0, 0.12, 1.0)
                + rocl_nt_xent([za, z2], t.temperature) / 256)
    raise AssertionError(method)


@pytest.mark.parametrize("method", ["clae", "ifm", "hcl", "mochi", "rush", "aacl", "arocl"])
def test_step_loss_is_the_pure_loss_of_the_forward_outputs(method):
    cfg, m, model, extras, fw, ds, aug = setup(method)
    x, _ = ds.get_batch(np.arange(8))
    spy = Spy(fw)
    out = m.step(spy, model, x, None, aug, torch.Generator().manual_seed(0))
    assert len(spy.outs) == 1  # one training forward per step
    want = expected_loss(method, cfg, m, spy.outs[0])
    assert float(out.loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.dim() > 1)
    if method == "clae":  # FGSM view of t1: within eps, through 'pgd'; clean views 'normal'
        (t12, bn0, _), (xa, bn1, _) = spy.calls[0]
        t1 = t12[:8]
        assert (bn0, bn1) == ("normal", "pgd")
        assert float((xa - t1).abs().max()) == pytest.approx(0.03, abs=1e-6)
        assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0


@pytest.mark.parametrize("method", ["ifm", "hcl", "mochi", "rush", "arocl", "adco", "caco"])
def test_single_bn_family_methods_refuse_dual_bn_models(method):
    from rcs.methods import build_method

    sets = TINY + [s for s in SETS[method] if not s.startswith("model.bn")]
    with pytest.raises(ConfigError, match="single-BN"):
        build_method(method, load_config(None, sets))


def _bank_grad_autograd(q, bank, logits_fn, target, temperature, signed_positive=False):
    """(1/B) Σ_i σ_ij ∂CE_i/∂b_j by per-sample float64 autograd (σ = -1 on the target entry
    when ``signed_positive``, CaCo; else +1, AdCo)."""
    q, bank = q.double(), bank.double()
    total = torch.zeros_like(bank)
    for i in range(q.shape[0]):
        b = bank.clone().requires_grad_(True)
        logits = logits_fn(F.normalize(q[i:i + 1], dim=1), F.normalize(b, dim=1)) / temperature
        (g,) = torch.autograd.grad(F.cross_entropy(logits, target[i:i + 1]), b)
        if signed_positive:
            g[int(target[i])] *= -1
        total += g / q.shape[0]
    return total


@pytest.mark.parametrize("method", ["adco", "caco"])
def test_memory_update_after_a_step_is_the_closed_form_gradient_step(method):
    cfg, m, model, extras, fw, ds, aug = setup(method)
    t = cfg.train
    bank = extras["memory"]
    # the bank starts from the eval-mode key embeddings of K seeded-random clean images
    idx = np.random.default_rng(cfg.seed).permutation(len(ds))[:24]
    model.eval()
    with torch.no_grad():
        z0 = F.normalize(model(to_float(ds.get_batch(idx)[0]), "normal"), dim=1)
    model.train()
    assert torch.allclose(bank.bank, z0, atol=1e-6) and not bank.velocity.any()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, _ = ds.get_batch(np.arange(16))
    for k in range(2):  # the second step starts from a non-zero velocity
        b0, v0 = bank.bank.clone(), bank.velocity.clone()
        out = m.step(fw, model, x, None, aug, torch.Generator().manual_seed(k))
        pending = [p.clone() for p in m.pending]
        opt.zero_grad()
        out.loss.backward()
        assert not any(p.requires_grad for p in extras.parameters())  # the bank: own SGD
        opt.step()
        keys_old = [p.clone() for p in extras["key_encoder"].parameters()]
        m.after_step(0.5)
        if method == "adco":
            q, kk = pending
            target = torch.arange(q.shape[0])
            kn = F.normalize(kk.double(), dim=1)

            def logits(a, d, kn=kn):
                return torch.cat([a @ kn.t(), a @ d.t()], 1)

            u = _bank_grad_autograd(q, b0, logits, target, t.memory.temperature)
        else:
            q1, p1, q2, p2 = pending
            u = sum(_bank_grad_autograd(qq, b0, lambda a, d: a @ d.t(), pp,
                                        t.memory.temperature, signed_positive=True)
                    for qq, pp in ((q1, p1), (q2, p2)))
        v_want = t.memory.momentum * v0.double() - u + t.memory.weight_decay * b0.double()
        assert torch.allclose(bank.velocity.double(), v_want, atol=1e-5)
        assert torch.allclose(bank.bank.double(), b0.double() - t.memory.lr * v_want, atol=1e-5)
        tau = t.memory.key_momentum
        for kp, ko, th in zip(extras["key_encoder"].parameters(), keys_old, model.parameters()):
            assert torch.allclose(kp, tau * ko + (1 - tau) * th.detach(), atol=1e-6)
    if method == "caco":  # positives are bank entries nearest to the other view's key
        assert 1 <= out.metrics["positives_used"] <= 24


def test_memory_larger_than_the_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="train.memory.size"):
        setup("adco", "train.memory.size=1000")


@pytest.mark.parametrize("method", ["adco", "caco"])
def test_mid_epoch_resume_restores_bank_velocity_and_key_encoder_exactly(tmp_path, method):
    from rcs.train.trainer import Trainer
    from rcs.utils.signals import TrainingInterrupted

    extra = ["train.epochs=3"]
    Trainer(cfg_for(method, *extra, out=tmp_path / "ref"), resume="none").fit()
    run = tmp_path / "run"
    t = Trainer(cfg_for(method, *extra, out=run), resume="none", stop=StopAfter(5))
    with pytest.raises(TrainingInterrupted):
        t.fit()
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["progress"]["batch"] > 0  # mid-epoch
    assert {"memory.bank", "memory.velocity"} <= set(state["extras"])
    assert state["extras"]["memory.velocity"].abs().sum() > 0
    Trainer(cfg_for(method, *extra, out=run), resume="auto").fit()
    a, b = (load_checkpoint(p / "checkpoint.pt") for p in (tmp_path / "ref", run))
    for key in ("model", "extras"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"


# ---------------------------------------------------------------------------- layer-wise
def test_layerwise_adds_alpha_times_the_method_loss_on_stage_projections():
    from rcs.losses import acl_loss
    from rcs.methods import build_method
    from rcs.methods.layerwise import LayerwiseContrastive

    cfg = load_config(None, TINY + ["train.method=acl", "model.blocks=[1,1]",
                                    "train.layerwise.stages=[1,2]",
                                    "train.layerwise.weights=[0.3,0.6]"])
    from rcs.data import Augment, build_dataset
    from rcs.methods.base import MultiForward, RunContext
    from rcs.models import build_model

    torch.manual_seed(0)
    m = build_method("acl", cfg)
    assert isinstance(m, LayerwiseContrastive) and m.name == "acl"
    model = build_model(cfg.model)
    ds = build_dataset(cfg.data)
    extras = torch.nn.ModuleDict(m.setup(RunContext(model, ds, torch.device("cpu"))))
    heads = extras["layerwise_heads"]
    assert [h[0].in_features for h in heads.values()] == [4, 8]  # width 4, then 8 channels
    fw = Spy(MultiForward(model, extras))
    x, _ = ds.get_batch(np.arange(8))
    out = m.step(fw, model, x, None, Augment(cfg.augment), torch.Generator().manual_seed(0))
    (v, bn0, _), (va, bn1, _) = fw.calls[0]
    z_nat, z_adv = fw.outs[0]
    final = acl_loss(z_nat, z_adv, cfg.train.temperature).detach()
    assert out.metrics["loss_final"] == pytest.approx(float(final), rel=1e-6)
    # stage projections recomputed from the stage outputs (train mode: batch statistics)
    feats = {}
    hooks = [getattr(model.encoder, n).register_forward_hook(
        lambda mod, i, o, n=n: feats.setdefault(n, []).append(o)) for n in ("layer1", "layer2")]
    with torch.no_grad():
        model(v, bn0), model(va, bn1)
    for h in hooks:
        h.remove()
    want = float(final)
    for k, alpha in ((1, 0.3), (2, 0.6)):
        zs = [heads[str(k)](o.mean(dim=(2, 3))) for o in feats[f"layer{k}"]]
        lk = float(acl_loss(zs[0], zs[1], cfg.train.temperature).detach())
        assert out.metrics[f"layer{k}"] == pytest.approx(lk, rel=1e-5)
        want += alpha * lk
    assert float(out.loss.detach()) == pytest.approx(want, rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for h in heads.values() for p in h.parameters())
    # attacks and selection passes through the raw model do not run the stage heads
    before = [p.clone() for p in heads.parameters()]
    with torch.no_grad():
        model(v, "normal")
    assert m._capture is None and all(torch.equal(a, b) for a, b in zip(before,
                                                                        heads.parameters()))


def test_layerwise_refuses_methods_without_an_embedding_loss_and_bad_stages():
    from rcs.methods import build_method

    lw = ["train.layerwise.stages=[1]", "train.layerwise.weights=[1.0]"]
    with pytest.raises(ConfigError, match="embedding_loss"):
        build_method("byorl", load_config(None, TINY + lw + ["train.method=byorl",
                                                             "model.bn_names=[normal]"]))
    with pytest.raises(ConfigError, match="embedding_loss"):
        build_method("adco", cfg_for("adco", *lw))
    with pytest.raises(ConfigError, match="one weight per entry"):
        load_config(None, TINY + ["train.layerwise.stages=[1,2]", "train.layerwise.weights=[1]"])
    with pytest.raises(ConfigError, match="stages"):
        setup("ifm", "train.layerwise.stages=[3]", "train.layerwise.weights=[1.0]")


def test_train_help_and_readme_list_the_family_and_the_layerwise_option():
    from pathlib import Path

    from rcs.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    text = " ".join(sub.format_help().split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in SETS:
        assert f"| `{name}` |" in readme and name in text, name
    assert "train.layerwise.stages" in text and "train.layerwise.stages" in readme
    assert "--attacks smoothing" in readme
