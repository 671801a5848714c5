"""Encoders from user code: ``model.arch`` given as a factory by dotted path.

``model.arch: mypkg.nets:wide_resnet`` (or ``mypkg.nets.wide_resnet``) names a callable that
takes no arguments and returns an ``nn.Module`` mapping normalised NCHW images to features:
``[B, D]`` vectors, or ``[B, C, H, W]`` maps that are average-pooled to ``[B, C]``. Drop its
classifier in the factory (e.g. ``net.fc = nn.Identity()`` for a torchvision ResNet), since the
output is used as the feature vector. :func:`rcs.models.build_model` wraps it in an
:class:`ExternalEncoder` (input normalisation ``model.normalize`` first, so inputs stay [0, 1]
pixels) after :func:`~rcs.models.multibn.convert_multibn` has given every BatchNorm one branch
per ``model.bn_names``; the export rebuilds the same wrapper around a fresh, unconverted
``factory()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcs.errors import ConfigError
from rcs.models.normalize import build_normalize


def is_factory_path(arch: str) -> bool:
    """Whether ``arch`` names a factory by dotted path (``pkg.mod:fn`` or ``pkg.mod.fn``)."""
    return ":" in arch or "." in arch


def import_factory(path: str) -> Callable[[], nn.Module]:
    """The callable named by ``path`` (``pkg.mod:attr.sub`` or ``pkg.mod.attr``)."""
    if ":" in path:
        mod_name, _, attr = path.partition(":")
    else:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise ConfigError(f"model.arch={path!r} is not a dotted path to a factory; write "
                          "'package.module:function' (or 'package.module.function')")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"model.arch={path!r}: cannot import module {mod_name!r} ({e}); "
                          "install it or put it on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model.arch={path!r}: module {mod_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"model.arch={path!r} is not callable")
    return obj  # type: ignore[return-value]


def build_factory_net(path: str) -> nn.Module:
    """``factory()`` of ``path``, checked to be an ``nn.Module``."""
    net = import_factory(path)()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.arch={path!r} returned {type(net).__name__}, not an nn.Module")
    return net


class ExternalEncoder(nn.Module):
    """``features(x) = pool(net(normalize(x)))`` for [0, 1] NCHW images.

    ``feature_dim`` is ``net.feature_dim`` (or timm's ``num_features``) when the network
    declares it, else measured by one eval-mode forward of a zero batch of ``probe_size`` px.
    """

    def __init__(self, net: nn.Module, normalize: str = "none", probe_size: int = 32,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.normalize = build_normalize(normalize)
        self.net = net
        dim = getattr(net, "feature_dim", None) or getattr(net, "num_features", None)
        self.feature_dim = int(dim) if isinstance(dim, int) else self._probe(
            probe_size, in_channels)

    def _probe(self, size: int, channels: int) -> int:
        ref = next(self.net.parameters(), None)
        x = torch.zeros(2, channels, size, size,
                        device=ref.device if ref is not None else None)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return int(self.forward(x).shape[1])
        finally:
            self.train(was_training)

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(self.normalize(x))
        if y.dim() == 4:
            return F.adaptive_avg_pool2d(y, 1).flatten(1)
        if y.dim() != 2:
            raise ConfigError(f"the network of model.arch returned a {y.dim()}-D output "
                              f"{tuple(y.shape)}; it must return [B, D] features or "
                              "[B, C, H, W] maps")
        return y
