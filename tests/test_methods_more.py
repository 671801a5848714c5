"""AdvCL / RoCL / BYORL / Tikhonov as trainer methods: registry and CLI help, BN requirements,
BYORL's exact EMA target, the Tikhonov wrapper, AdvCL's pseudo-label schedule, and exact resume
of the method state (extra modules, pseudo-labels) from a mid-epoch checkpoint."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rcs.config import load_config
from rcs.errors import ConfigError
from rcs.utils.checkpoint_io import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")

TINY = [
    "data.name=synthetic", "data.synthetic_size=64", "data.val_fraction=0.125",
    "model.width=4", "model.blocks=[1]", "model.head_dim=16", "model.head_hidden=16",
    "train.batch_size=16", "train.epochs=2", "train.lr=0.1", "train.lr_warmup_epochs=1",
    "train.attack.steps=1", "train.log_every=1", "train.channels_last=false",
    "selection.method=random", "selection.warmup_epochs=1", "selection.every=1",
    "selection.fraction=0.5", "device=cpu",
]
SINGLE = ["model.bn_names=[normal]"]
METHOD_SETS = {
    "advcl": ["train.method=advcl", "model.bn_names=[normal,pgd,pgd_ce]", "model.head=advcl",
              "train.advcl.clusters=[2,5,100]", "train.advcl.pseudo_every=1",
              "train.advcl.kmeans_iters=5"],
    "rocl": ["train.method=rocl", "model.head=rocl", *SINGLE],
    "byorl": ["train.method=byorl", "model.head=byol", *SINGLE],
    "tikhonov": ["train.method=tikhonov", "train.tikhonov.lam=1.0", *SINGLE],
}


def cfg_for(method: str, *extra: str, out=None):
    sets = TINY + METHOD_SETS[method] + list(extra)
    if out is not None:
        sets.append(f"out_dir={out}")
    return load_config(None, sets)


def test_catalog_registry_cli_and_readme_agree():
    from pathlib import Path

    from rcs.cli.parser import build_parser
    from rcs.methods import method_names
    from rcs.methods.catalog import CATALOG

    assert sorted(CATALOG) == method_names()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    helptext = sub.format_help()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in CATALOG:
        assert name in helptext and f"| `{name}` |" in readme, name
    assert "Fan et al." in helptext and "Gowal et al." in helptext


@pytest.mark.parametrize("method", ["rocl", "byorl", "tikhonov"])
def test_single_bn_methods_refuse_dual_bn_models(method):
    from rcs.methods import build_method

    sets = [s for s in TINY] + [s for s in METHOD_SETS[method] if not s.startswith("model.bn")]
    with pytest.raises(ConfigError, match="single-BN"):
        build_method(method, load_config(None, sets))


def test_advcl_needs_three_branches_and_tikhonov_needs_lambda():
    from rcs.methods import build_method

    with pytest.raises(ConfigError, match="pgd_ce"):
        build_method("advcl", load_config(None, TINY + ["train.method=advcl"]))
    with pytest.raises(ConfigError, match="tikhonov.lam"):
        build_method("tikhonov", load_config(None, TINY + SINGLE))
    with pytest.raises(ConfigError, match="advcl.attack_mode"):
        load_config(None, TINY + ["train.advcl.attack_mode=sometimes"])


def test_multiforward_extras():
    from torch import nn

    from rcs.methods.base import MultiForward
    from rcs.models import build_model

    model = build_model(cfg_for("rocl").model)
    extra = nn.Linear(16, 3)
    fw = MultiForward(model, nn.ModuleDict({"lin": extra}))
    x = torch.rand(4, 3, 32, 32)
    z, y = fw([(x, "normal", "proj"), (x, "normal", "proj:lin")])
    assert torch.allclose(y, extra(z))
    with pytest.raises(ValueError, match="no extra module"):
        fw([(x, "normal", "proj:nope")])


def _setup(method: str, *extra: str):
    from rcs.data import Augment, build_dataset
    from rcs.methods import build_method
    from rcs.methods.base import MultiForward, RunContext
    from rcs.models import build_model

    cfg = cfg_for(method, *extra)
    torch.manual_seed(0)
    m = build_method(method, cfg)
    model = build_model(cfg.model)
    ds = build_dataset(cfg.data)
    extras = torch.nn.ModuleDict(m.setup(RunContext(model, ds, torch.device("cpu"))))
    return cfg, m, model, extras, MultiForward(model, extras), ds, Augment(cfg.augment)


def test_byorl_target_is_an_exact_ema_of_the_online_network():
    from rcs.methods.byorl import ema_rate

    cfg, m, model, extras, fw, ds, aug = _setup("byorl")
    target, online = extras["target"], model
    assert not any(p.requires_grad for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))
    params = [*model.parameters(), *extras["predictor"].parameters()]
    opt = torch.optim.SGD(params, lr=0.5)
    x, _ = ds.get_batch(np.arange(16))
    ref = [p.detach().double().clone() for p in target.parameters()]
    for k, progress in enumerate([0.0, 0.3, 1.0]):
        old = [p.detach().clone() for p in target.parameters()]
        out = m.step(fw, model, x, None, aug, torch.Generator().manual_seed(k))
        opt.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in target.parameters())
        opt.step()
        m.after_step(progress)
        tau = ema_rate(progress, 0.996)
        assert m.tau == tau
        for xi, xi_old, theta in zip(target.parameters(), old, online.parameters()):
            assert torch.equal(xi, xi_old.mul(tau).add(theta.detach(), alpha=1 - tau))
        ref = [tau * r + (1 - tau) * th.detach().double()
               for r, th in zip(ref, online.parameters())]
        for b_t, b_o in zip(target.buffers(), online.buffers()):
            assert torch.equal(b_t, b_o)
    assert all(torch.allclose(xi.double(), r, atol=1e-7) for xi, r in zip(target.parameters(), ref))
    assert ema_rate(0.0) == pytest.approx(0.996) and ema_rate(1.0) == 1.0
    assert ema_rate(0.5) == pytest.approx(0.998)
    # at progress 1 the target stops moving: tau = 1
    assert torch.equal(next(target.parameters()), old[0].mul(1.0).add(
        next(online.parameters()).detach(), alpha=0.0))


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


class StopAfter:
    """A StopFlag that asks the trainer to stop before the (n+1)-th step check."""

    def __init__(self, n: int):
        from rcs.utils.signals import StopFlag

        self.flag, self.n, self.checks = StopFlag(signals=()), n, 0

    def install(self):
        self.flag.install()
        return self

    def restore(self):
        self.flag.restore()

    @property
    def signum(self):
        return 15

    @property
    def set(self) -> bool:
        self.checks += 1
        return self.checks > self.n


@pytest.mark.parametrize("method", ["byorl", "advcl"])
def test_mid_epoch_resume_is_exact_with_method_state(tmp_path, method):
    from rcs.train.trainer import Trainer
    from rcs.utils.signals import TrainingInterrupted

    extra = ["train.epochs=3", "train.advcl.pseudo_every=2"] if method == "advcl" else \
        ["train.epochs=3"]
    ref = Trainer(cfg_for(method, *extra, out=tmp_path / "ref"), resume="none")
    ref.fit()
    run = tmp_path / "run"
    t = Trainer(cfg_for(method, *extra, out=run), resume="none", stop=StopAfter(5))
    with pytest.raises(TrainingInterrupted):
        t.fit()
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["progress"]["epoch"] == 2 and state["progress"]["batch"] > 0  # mid-epoch
    assert "extras" in state
    if method == "byorl":
        assert any(k.startswith("target.") for k in state["extras"])
    else:
        assert state["method"]["pseudo_labels"].shape[0] == 3
    Trainer(cfg_for(method, *extra, out=run), resume="auto").fit()
    a, b = load_checkpoint(tmp_path / "ref" / "checkpoint.pt"), load_checkpoint(
        run / "checkpoint.pt")
    for key in ("model", "extras"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    if method == "advcl":
        assert torch.equal(a["method"]["pseudo_labels"], b["method"]["pseudo_labels"])
        assert a["method"]["pseudo_labels_epoch"] == 3


@pytest.mark.parametrize("selector", ["random", "full"])
def test_every_method_runs_with_the_simple_selectors(tmp_path, selector):
    from rcs.train.trainer import Trainer

    for method in METHOD_SETS:
        out = tmp_path / f"{method}-{selector}"
        summary = Trainer(cfg_for(method, f"selection.method={selector}", out=out),
                          resume="none").fit()
        assert summary["selections"] == (0 if selector == "full" else 1)
        assert np.isfinite(summary["final_loss"]), method


def test_pgd_start_clamp_keeps_the_first_forward_in_the_box():
    from rcs.attacks import pgd

    x = torch.tensor([[0.0, 0.01, 0.5, 0.99, 1.0]]).repeat(64, 1)
    for clamp in (False, True):
        seen = []

        def loss_fn(xa, seen=seen):
            seen.append(xa.detach().clone())
            return xa.sum()

        pgd(loss_fn, x, eps=0.03, alpha=0.0, steps=1, generator=torch.Generator().manual_seed(0),
            start_clamp=clamp)
        first = seen[0]
        inside = bool(((first >= 0) & (first <= 1)).all())
        assert inside == clamp
        assert ((first - x).abs() <= 0.03 + 1e-7).all()
