"""``RobustModel`` (encoder + projection head + optional classifier, multi-BN) and ``build_model``.

Every forward names the BN branch: ``model(x, bn="pgd")`` routes all multi-BN layers (cached
list) through branch ``pgd`` before running. Inputs are [0, 1] pixels; normalisation is inside
``model.encoder``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn

from rcs.config.checks import check_name
from rcs.config.schema import ModelConfig
from rcs.errors import ConfigError
from rcs.models.external import ExternalEncoder, build_factory_net, is_factory_path
from rcs.models.heads import HEADS
from rcs.models.multibn import (
    NormFactory,
    check_branch_names,
    convert_multibn,
    multi_bn,
    multi_bn_layers,
    route,
)
from rcs.models.resnet import ResNet
from rcs.models.wrn import WideResNet

ArchBuilder = Callable[[ModelConfig, NormFactory], nn.Module]
"""``builder(cfg, norm) -> encoder``; the encoder has ``feature_dim`` and ``rebuild(norm)``."""

ARCHS: dict[str, ArchBuilder] = {}


def register_arch(name: str) -> Callable[[ArchBuilder], ArchBuilder]:
    """Decorator adding an encoder builder to :data:`ARCHS` under ``name``."""

    def deco(fn: ArchBuilder) -> ArchBuilder:
        ARCHS[name] = fn
        return fn

    return deco


@register_arch("resnet18")
def _resnet18(cfg: ModelConfig, norm: NormFactory) -> nn.Module:
    return ResNet("basic", cfg.blocks or [2, 2, 2, 2], cfg.width, norm, cfg.normalize)


@register_arch("resnet34")
def _resnet34(cfg: ModelConfig, norm: NormFactory) -> nn.Module:
    return ResNet("basic", cfg.blocks or [3, 4, 6, 3], cfg.width, norm, cfg.normalize)


@register_arch("resnet50")
def _resnet50(cfg: ModelConfig, norm: NormFactory) -> nn.Module:
    return ResNet("bottleneck", cfg.blocks or [3, 4, 6, 3], cfg.width, norm, cfg.normalize)


@register_arch("wrn28_10")
def _wrn28_10(cfg: ModelConfig, norm: NormFactory) -> nn.Module:
    return WideResNet(28, 10, cfg.width, cfg.blocks or None, norm, cfg.normalize)


@register_arch("wrn")
def _wrn(cfg: ModelConfig, norm: NormFactory) -> nn.Module:
    return WideResNet(cfg.depth, cfg.widen, cfg.width, cfg.blocks or None, norm, cfg.normalize)


class RobustModel(nn.Module):
    """Encoder (with input normalisation) + projection head + optional linear classifier.

    * ``model(x, bn)`` = ``head(encoder(x))`` (``encoder(x)`` when there is no head);
    * ``features(x, bn)`` = ``encoder(x)``; ``project(f, bn)`` = ``head(f)``;
    * ``logits(x, bn)`` = ``classifier(encoder(x))`` (SAT; needs a classifier).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None,
                 classifier: nn.Module | None = None,
                 bn_names: Iterable[str] = ("normal", "pgd")) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_module("head", head)
        self.register_module("classifier", classifier)
        self.bn_names: tuple[str, ...] = check_branch_names(bn_names)
        self.feature_dim = int(encoder.feature_dim)
        self.out_dim = int(head.out_dim) if head is not None else self.feature_dim
        self._mbns = multi_bn_layers(self)
        for m in self._mbns:
            if set(m.names) != set(self.bn_names):
                raise ConfigError(f"a multi-BN layer has branches {list(m.names)} but the model "
                                  f"declares bn_names={list(self.bn_names)}")

    def set_branch(self, bn: str) -> None:
        """Route every multi-BN layer through branch ``bn`` (ConfigError if unknown)."""
        if bn not in self.bn_names:
            raise ConfigError(f"unknown BN branch {bn!r}; this model has branches "
                              f"{list(self.bn_names)}")
        route(self._mbns, bn)

    def forward(self, x: Tensor, bn: str = "normal") -> Tensor:
        self.set_branch(bn)
        f = self.encoder(x)
        return f if self.head is None else self.head(f)

    def features(self, x: Tensor, bn: str = "normal") -> Tensor:
        """Encoder features ``[B, feature_dim]`` of [0, 1] images on branch ``bn``."""
        self.set_branch(bn)
        return self.encoder(x)

    def project(self, f: Tensor, bn: str = "normal") -> Tensor:
        """Projection head on features ``f`` (identity when the model has no head)."""
        self.set_branch(bn)
        return f if self.head is None else self.head(f)

    def logits(self, x: Tensor, bn: str = "normal") -> Tensor:
        """``classifier(encoder(x))`` on branch ``bn``."""
        if self.classifier is None:
            raise ConfigError("this model has no classifier: build it with "
                              "build_model(cfg, classifier=True) (SAT pretraining)")
        return self.classifier(self.features(x, bn))


def build_encoder(cfg: ModelConfig, norm: NormFactory | None = None) -> nn.Module:
    """The encoder of ``cfg``: a registered arch built with ``norm`` (default: multi-BN with
    ``cfg.bn_names``), or a factory by dotted path (see :mod:`rcs.models.external`) whose
    BatchNorms :func:`convert_multibn` turns into multi-BN (``norm=plain_bn``: left single-BN)."""
    from rcs.models.multibn import plain_bn

    check_arch(cfg.arch)
    if cfg.arch in ARCHS:
        return ARCHS[cfg.arch](cfg, norm or multi_bn(cfg.bn_names))
    net = build_factory_net(cfg.arch)
    if norm is not plain_bn:
        net = convert_multibn(net, cfg.bn_names)
    return ExternalEncoder(net, cfg.normalize)


def check_arch(arch: str) -> None:
    """ConfigError unless ``arch`` is a registered arch or a factory by dotted path."""
    if arch not in ARCHS and not (is_factory_path(arch) and " " not in arch):
        check_name("model.arch", arch, list(ARCHS),
                   ", nor a factory by dotted path ('package.module:function')")


def check_head(head: str) -> None:
    """ConfigError unless ``head`` is a registered head or ``none``."""
    check_name("model.head", head, [*HEADS, "none"])


def build_model(cfg: ModelConfig, classifier: bool = False) -> RobustModel:
    """Build the multi-BN model of ``cfg``; ``classifier=True`` adds ``Linear(feature_dim,
    cfg.num_classes)`` (SAT pretraining). ``cfg.head == 'none'`` gives ``model.head is None``.
    ``cfg.arch`` is a registered name or a factory by dotted path (any backbone: its
    BatchNorms become multi-BN, see :func:`rcs.models.convert_multibn`)."""
    check_head(cfg.head)
    norm = multi_bn(cfg.bn_names)
    encoder = build_encoder(cfg, norm)
    head = None
    if cfg.head != "none":
        if cfg.head_dim <= 0:
            raise ConfigError(f"model.head_dim={cfg.head_dim} must be > 0")
        head = HEADS[cfg.head](encoder.feature_dim, cfg.head_dim, norm,
                               hidden=cfg.head_hidden or None)
    clf = None
    if classifier:
        if cfg.num_classes <= 0:
            raise ConfigError(f"model.num_classes={cfg.num_classes} must be > 0")
        clf = nn.Linear(encoder.feature_dim, cfg.num_classes)
    return RobustModel(encoder, head, clf, cfg.bn_names)
