"""Names in a config are checked against the registries (arch, head, reader, method, selector),
not fixed tuples: a name registered by user code is valid, an unknown one names the closest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rcs.cli.common import check_names
from rcs.config import load_config
from rcs.errors import ConfigError


@pytest.fixture
def toy_arch():
    from rcs.models import ARCHS, register_arch

    class Tiny(nn.Module):
        feature_dim = 6

        def __init__(self, norm):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.bn = norm(6, 2)

        def forward(self, x):
            return self.bn(self.conv(x)).mean(dim=(2, 3))

    @register_arch("toy")
    def _toy(cfg, norm):
        return Tiny(norm)

    yield Tiny
    ARCHS.pop("toy")


def test_registered_arch_validates_and_builds(toy_arch):
    from rcs.models import build_model

    cfg = load_config(None, ["model.arch=toy", "model.head=mlp2", "model.head_dim=4"])
    check_names(cfg)
    model = build_model(cfg.model)
    assert isinstance(model.encoder, toy_arch) and model.feature_dim == 6
    assert model(torch.rand(2, 3, 8, 8), "pgd").shape == (2, 4)


def test_unknown_arch_lists_the_registered_ones(toy_arch):
    from rcs.models import build_model

    cfg = load_config(None, ["model.arch=resnet19"])  # the config layer knows no registry
    for fn in (lambda: check_names(cfg), lambda: build_model(cfg.model)):
        with pytest.raises(ConfigError, match=r"model.arch='resnet19' is not one of resnet18, "
                                              r"resnet34, .*toy.*Did you mean 'resnet18'"):
            fn()
    with pytest.raises(ConfigError, match="model.arch='vgg' is not one of"):
        check_names(load_config(None, ["model.arch=vgg"]))


def test_registered_head_and_unknown_head():
    from rcs.models import HEADS, build_model, register_head
    from rcs.models.heads import MLP2Head

    @register_head("mlp2_copy")
    class Copy(MLP2Head):
        pass

    try:
        cfg = load_config(None, ["model.head=mlp2_copy", "model.width=4", "model.blocks=[1]"])
        check_names(cfg)
        assert isinstance(build_model(cfg.model).head, Copy)
    finally:
        HEADS.pop("mlp2_copy")
    with pytest.raises(ConfigError, match=r"model.head='mlp22' is not one of .*none.*"
                                          r"Did you mean 'mlp2'"):
        check_names(load_config(None, ["model.head=mlp22"]))


def test_registered_reader_and_unknown_dataset():
    from rcs.data import build_dataset
    from rcs.data.dataset import ImageDataset
    from rcs.data.readers import READERS, register_reader

    @register_reader("ones")
    def _ones(c, split):
        return ImageDataset(np.ones((5, 4, 4, 3), np.uint8), np.arange(5) % 2, name="ones")

    try:
        cfg = load_config(None, ["data.name=ones", "data.root=/nowhere"])
        check_names(cfg)
        ds = build_dataset(cfg.data)
        assert len(ds) == 5
    finally:
        READERS.pop("ones")
    cfg = load_config(None, ["data.name=cifar11", "data.root=/x"])
    for fn in (lambda: check_names(cfg), lambda: build_dataset(cfg.data)):
        with pytest.raises(ConfigError, match=r"data.name='cifar11' is not one of .*synthetic.*"
                                              r"Did you mean 'cifar10'"):
            fn()


def test_unknown_selector_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown selection.method 'rcss'. Did you mean 'rcs'"):
        check_names(load_config(None, ["selection.method=rcss"]))
