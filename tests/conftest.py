"""Shared test settings and fixtures: the tiny run overrides every CPU run starts from, the method
settings of the trainer-method tests, a tiny pretraining checkpoint, and the tiny ResNet and
random images the selector tests share.

Plain helpers are imported by test files (``from tests.conftest import tiny, sets``); fixtures
are found by pytest."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RCS_QUIET", "1")

CIFAR10_SUBSET = Path(os.environ.get(
    "RCS_CIFAR10_SUBSET",
    ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar10_subset.npz"))


@pytest.fixture(scope="session")
def cifar10_subset_path() -> Path:
    """The real CIFAR-10 subset npz (5,551 train / 1,017 test); skips when it is absent."""
    if not CIFAR10_SUBSET.is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR10_SUBSET}")
    return CIFAR10_SUBSET


# ------------------------------------------------------------------------ tiny run overrides
#: A width-4 one-block ResNet on 96 synthetic 32x32 images: the model part of every tiny run.
TINY_MODEL = ("data.name=synthetic", "data.synthetic_size=96", "data.val_fraction=0.1",
              "model.width=4", "model.blocks=[1]", "model.head_dim=16", "device=cpu")
#: TINY_MODEL plus two epochs of 16-image batches with a one-step attack: a tiny CPU run.
TINY_RUN = TINY_MODEL + ("train.batch_size=16", "train.epochs=2", "train.attack.steps=1",
                         "train.log_every=1", "train.channels_last=false")


def tiny(*changes: str, drop: tuple[str, ...] = (), base: tuple[str, ...] = TINY_RUN) -> list[str]:
    """``base`` as ``key=value`` overrides, with each of ``changes`` replacing the value of its
    key (or added after the base) and the keys in ``drop`` left out."""
    out = {kv.split("=", 1)[0]: kv for kv in base}
    for kv in changes:
        out[kv.split("=", 1)[0]] = kv
    return [kv for key, kv in out.items() if key not in drop]


def sets(items: list[str]) -> list[str]:
    """``--set key=value`` command-line arguments for each override."""
    return [a for kv in items for a in ("--set", kv)]


# ------------------------------------------------------------------------ trainer methods
#: The tiny run of the trainer-method tests: 64 images (56 candidates), random selection.
METHOD_TINY = tiny("data.synthetic_size=64", "data.val_fraction=0.125", "model.head_hidden=16",
                   "train.lr=0.1", "train.lr_warmup_epochs=1", "selection.method=random",
                   "selection.warmup_epochs=1", "selection.every=1", "selection.fraction=0.5")
SINGLE_BN = ["model.bn_names=[normal]"]
"""One plain BN branch (the single-BN methods)."""
_SINGLE_ROCL = [*SINGLE_BN, "model.head=rocl"]
#: Each method's own settings on top of METHOD_TINY.
METHOD_SETS: dict[str, list[str]] = {
    "advcl": ["train.method=advcl", "model.bn_names=[normal,pgd,pgd_ce]", "model.head=advcl",
              "train.advcl.clusters=[2,5,100]", "train.advcl.pseudo_every=1",
              "train.advcl.kmeans_iters=5"],
    "rocl": ["train.method=rocl", "model.head=rocl", *SINGLE_BN],
    "byorl": ["train.method=byorl", "model.head=byol", *SINGLE_BN],
    "tikhonov": ["train.method=tikhonov", "train.tikhonov.lam=1.0", *SINGLE_BN],
    # the survey family
    "clae": ["train.method=clae", "train.attack.eps=0.03", "train.attack.alpha=0.03",
             "train.attack.random_start=false", "train.clae.alpha=0.7"],
    "ifm": ["train.method=ifm", "train.ifm.epsilon=0.2", "train.ifm.alpha=0.5", *_SINGLE_ROCL],
    "hcl": ["train.method=hcl", "train.hcl.tau_plus=0.2", "train.hcl.beta=0.5", *_SINGLE_ROCL],
    "mochi": ["train.method=mochi", "train.mochi.hard=6", "train.mochi.mix=5",
              "train.mochi.query_mix=3", *_SINGLE_ROCL],
    "rush": ["train.method=rush", *_SINGLE_ROCL],
    "aacl": ["train.method=aacl"],
    "arocl": ["train.method=arocl", "train.ainfonce.variant=iphn", *_SINGLE_ROCL],
    "adco": ["train.method=adco", "train.memory.size=24", "train.temperature=0.2",
             "train.memory.temperature=0.1", *_SINGLE_ROCL],
    "caco": ["train.method=caco", "train.memory.size=24", "train.temperature=0.2",
             "train.memory.temperature=0.1", "train.memory.weight_decay=0.01", *_SINGLE_ROCL],
}
ADDED_METHODS = ["advcl", "rocl", "byorl", "tikhonov"]
FAMILY_METHODS = ["clae", "ifm", "hcl", "mochi", "rush", "aacl", "arocl", "adco", "caco"]


def method_cfg(method: str, *extra: str, out: Any = None):
    """The RunConfig of METHOD_TINY + the method's settings + ``extra`` (+ ``out_dir``)."""
    from rcs.config import load_config

    items = METHOD_TINY + METHOD_SETS[method] + list(extra)
    if out is not None:
        items.append(f"out_dir={out}")
    return load_config(None, items)


def method_setup(method: str, *extra: str) -> tuple:
    """A built method on a fresh seeded model: (cfg, method, model, extras, forward, dataset,
    augment), the pieces the trainer hands to ``Method.step``."""
    from rcs.data import Augment, build_dataset
    from rcs.methods import build_method
    from rcs.methods.base import MultiForward, RunContext
    from rcs.models import build_model

    cfg = method_cfg(method, *extra)
    torch.manual_seed(0)
    m = build_method(method, cfg)
    model = build_model(cfg.model)
    ds = build_dataset(cfg.data)
    extras = torch.nn.ModuleDict(m.setup(RunContext(model, ds, torch.device("cpu"))))
    return cfg, m, model, extras, MultiForward(model, extras), ds, Augment(cfg.augment)


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


# ------------------------------------------------------------------------ pretraining checkpoint
def randomise_bns(model: torch.nn.Module, seed: int = 1, counts: bool = True) -> None:
    """Give every branch of every multi-BN layer its own affine parameters and statistics (and,
    with ``counts``, its own ``num_batches_tracked``)."""
    from rcs.models import multi_bn_layers

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in multi_bn_layers(model):
            for bn in m.bns.values():
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.3)
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.2)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
                if counts:
                    bn.num_batches_tracked.fill_(int(torch.randint(1, 99, (1,), generator=g)))


#: The tiny dual-BN model of the fine-tuning and export tests (no training settings).
PRETRAIN_TINY = tiny("data.synthetic_size=64", "model.head_dim=8",
                     drop=("data.val_fraction",), base=TINY_MODEL)


def pretraining_checkpoint(tmp_path: Path, extra: list[str] | None = None, *,
                           counts: bool = True) -> tuple:
    """A complete 'pretraining' checkpoint of PRETRAIN_TINY (+ ``extra``) whose BN branches hold
    different statistics: (path, cfg, model)."""
    from rcs.config import load_config, to_dict
    from rcs.models import build_model
    from rcs.utils.checkpoint_io import save_checkpoint

    cfg = load_config(None, PRETRAIN_TINY + [f"out_dir={tmp_path}"] + (extra or []))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    randomise_bns(model, counts=counts)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config_json": json.dumps(to_dict(cfg)),
                           "progress": {"epoch": 2}, "complete": True})
    return path, cfg, model


# ------------------------------------------------------------------------ selector tests
def tiny_resnet(classifier: bool = True) -> torch.nn.Module:
    """A seeded width-4 dual-BN ResNet-18 with two one-block stages."""
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(arch="resnet18", width=4, blocks=[1, 1], head_dim=16),
                       classifier=classifier)


def random_images(n: int) -> tuple:
    """``n`` random 16x16 images with random labels and their 90/10 candidate/validation split:
    (dataset, candidates, validation)."""
    from rcs.data import ImageDataset, train_val_split

    rng = np.random.default_rng(0)
    ds = ImageDataset(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                      rng.integers(0, 10, n))
    cand, val = train_val_split(n, 0.1, 0)
    return ds, cand, val


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """The selector tests' model: ``tiny_resnet()`` with a classifier."""
    return tiny_resnet()


@pytest.fixture(scope="module")
def data() -> tuple:
    """The selector tests' data: ``random_images(60)`` (54 candidates, 6 validation images)."""
    return random_images(60)


# ------------------------------------------------------------------------ loss references
def golden_inputs() -> list[np.ndarray]:
    """PUBLISHED_METHODS.md A8: zi, zj, zo, zi_adv, zj_adv = round(N(0, 1) [4, 8], 3), seed 0."""
    rng = np.random.default_rng(0)
    return [np.round(rng.standard_normal((4, 8)), 3) for _ in range(5)]


def t64(a: np.ndarray) -> torch.Tensor:
    """A float64 tensor of ``a``."""
    return torch.tensor(a, dtype=torch.float64)
