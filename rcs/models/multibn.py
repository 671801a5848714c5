"""Multi-branch batch normalisation (ACL's "dual BN").

A :class:`MultiBatchNorm` layer holds one ordinary BatchNorm per branch name (``normal``, ``pgd``,
...) in an ``nn.ModuleDict``; its ``active`` attribute picks the branch used by ``forward``.
Convolutions and linear layers are shared between branches, only the BN affine parameters and
running statistics are per branch. State-dict keys look like ``layer1.0.bn1.bns.pgd.weight``.

Architectures take a *norm factory* ``norm(num_features, dim) -> nn.Module`` (``dim`` 2 for
BatchNorm2d, 1 for BatchNorm1d), so one definition builds both the multi-BN training model
(:func:`multi_bn`) and the single-BN export (:func:`plain_bn`).

Networks written elsewhere (torchvision/timm ResNets, WideResNets, your own) get the same
routing with :func:`convert_multibn`, which replaces every BatchNorm by a :class:`MultiBatchNorm`
holding one copy of it per branch (in the spirit of ``SyncBatchNorm.convert_sync_batchnorm``);
:class:`Routed` adds the branch as a per-call argument, ``net(x, bn="pgd")``, and
:func:`revert_multibn` turns a converted network back into single-BN on one branch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from rcs.errors import ConfigError

NormFactory = Callable[[int, int], nn.Module]
"""``norm(num_features, dim)``: dim 2 -> a BatchNorm2d-like layer, dim 1 -> BatchNorm1d-like."""

_RESERVED = frozenset(dir(nn.ModuleDict()))


def plain_bn(num_features: int, dim: int = 2) -> nn.Module:
    """An ordinary BatchNorm (``dim`` 2 -> BatchNorm2d, 1 -> BatchNorm1d); weight 1, bias 0."""
    if dim == 2:
        return nn.BatchNorm2d(num_features)
    if dim == 1:
        return nn.BatchNorm1d(num_features)
    raise ValueError(f"norm dim must be 1 or 2, got {dim}")


def check_branch_names(names: Iterable[str]) -> tuple[str, ...]:
    """Validate BN branch names: non-empty, distinct, usable as module names (no '.')."""
    out = tuple(names)
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"bn_names={list(out)} must be a non-empty list of distinct names "
                          "(e.g. ['normal', 'pgd'])")
    for n in out:
        if not isinstance(n, str) or not n or "." in n or n in _RESERVED:
            raise ConfigError(f"bn branch name {n!r} is not allowed: use a non-empty name without "
                              "'.' that is not an nn.ModuleDict attribute (e.g. 'pgd')")
    return out


class MultiBatchNorm(nn.Module):
    """One BatchNorm per branch name; ``forward`` uses ``bns[active]``.

    ``y = (x - mu_b) / sqrt(var_b + eps) * gamma_b + beta_b`` with the statistics and affine
    parameters of branch ``b = active`` (batch statistics in train mode, which then update only
    that branch's running averages).
    """

    def __init__(self, num_features: int, names: Iterable[str], dim: int = 2,
                 template: nn.Module | None = None) -> None:
        super().__init__()
        self.names = check_branch_names(names)
        self.num_features = num_features
        self.dim = dim
        # template: an existing BN copied into every branch (its type, eps, momentum, affine
        # parameters and running statistics); otherwise a fresh plain_bn per branch
        self.bns = nn.ModuleDict({n: copy.deepcopy(template) if template is not None
                                  else plain_bn(num_features, dim) for n in self.names})
        self.active = self.names[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.bns[self.active](x)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, names={list(self.names)}, dim={self.dim}, "
                f"active={self.active!r}")


def multi_bn(names: Iterable[str]) -> NormFactory:
    """Norm factory building :class:`MultiBatchNorm` layers with the given branch names."""
    checked = check_branch_names(names)

    def factory(num_features: int, dim: int = 2) -> nn.Module:
        return MultiBatchNorm(num_features, checked, dim)

    return factory


def multi_bn_layers(model: nn.Module) -> list[MultiBatchNorm]:
    """Every :class:`MultiBatchNorm` inside ``model`` (in module order)."""
    return [m for m in model.modules() if isinstance(m, MultiBatchNorm)]


def _layers_of(model: nn.Module) -> list[MultiBatchNorm]:
    cached = getattr(model, "_mbns", None)
    return cached if cached is not None else multi_bn_layers(model)


def route(layers: list[MultiBatchNorm], name: str) -> None:
    """Make ``name`` the active branch of every layer in ``layers``; unknown name -> ConfigError."""
    for m in layers:
        if m.active != name:
            if name not in m.bns:
                raise ConfigError(f"unknown BN branch {name!r}; this model has branches "
                                  f"{list(m.names)}")
            m.active = name


def set_branch(model: nn.Module, name: str) -> None:
    """Route every multi-BN layer of ``model`` through branch ``name`` (checked first)."""
    layers = _layers_of(model)
    for m in layers:
        if name not in m.bns:
            raise ConfigError(f"unknown BN branch {name!r}; this model has branches "
                              f"{list(m.names)}")
    route(layers, name)


@contextmanager
def branch(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """``with branch(model, 'pgd'): model.encoder(x)`` -- restores the previous branches after."""
    layers = _layers_of(model)
    previous = [m.active for m in layers]
    set_branch(model, name)
    try:
        yield model
    finally:
        for m, p in zip(layers, previous):
            m.active = p


_BN_DIMS = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


def convert_multibn(module: nn.Module, names: Iterable[str] = ("normal", "pgd")) -> nn.Module:
    """Replace every BatchNorm of ``module`` by a :class:`MultiBatchNorm` with ``names``.

    Each branch starts as a copy of the BatchNorm it replaces (same type, ``eps``,
    ``momentum``, affine parameters and running statistics), so the converted network computes
    what the original did on every branch until training makes them differ. Works on any
    ``nn.Module`` (BatchNorm1d/2d/3d, SyncBatchNorm and other ``_BatchNorm`` subclasses; existing
    multi-BN layers are left alone). Like ``SyncBatchNorm.convert_sync_batchnorm`` it converts
    in place and returns the module (a new one when ``module`` itself is a BatchNorm). Route it
    with :func:`set_branch` / :func:`branch`, or wrap it in :class:`Routed` to pass ``bn=`` per
    call. State-dict keys gain ``.bns.<branch>``: ``layer1.0.bn1.weight`` ->
    ``layer1.0.bn1.bns.pgd.weight``.
    """
    checked = check_branch_names(names)
    if isinstance(module, _BatchNorm):
        dim = next((d for t, d in _BN_DIMS.items() if isinstance(module, t)), 2)
        return MultiBatchNorm(module.num_features, checked, dim, template=module)
    if isinstance(module, MultiBatchNorm):
        return module
    for name, child in module.named_children():
        new = convert_multibn(child, checked)
        if new is not child:
            setattr(module, name, new)
    return module


def revert_multibn(module: nn.Module, name: str) -> nn.Module:
    """Replace every :class:`MultiBatchNorm` of ``module`` by its branch ``name`` (in place;
    returns the module): the single-BN network equal to the multi-BN one routed through
    ``name``. Its state dict is ``single_bn_state_dict(module.state_dict(), name)``."""
    if isinstance(module, MultiBatchNorm):
        if name not in module.bns:
            raise ConfigError(f"unknown BN branch {name!r}; this model has branches "
                              f"{list(module.names)}")
        return module.bns[name]
    for child_name, child in module.named_children():
        new = revert_multibn(child, name)
        if new is not child:
            setattr(module, child_name, new)
    return module


class Routed(nn.Module):
    """``Routed(net)(x, bn="pgd")``: runs ``net`` with every multi-BN layer on branch ``bn``.

    ``net`` is a network with :class:`MultiBatchNorm` layers, e.g. ``convert_multibn(resnet)``.
    The layer list is cached; an unknown branch raises ``ConfigError``. ``bn=None`` keeps the
    current routing. Other arguments go to ``net`` unchanged. State-dict keys are ``net.*``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self._mbns = multi_bn_layers(net)
        if not self._mbns:
            raise ConfigError(f"{type(net).__name__} has no multi-BN layer to route; convert "
                              "it first: Routed(convert_multibn(net, names))")
        self.bn_names: tuple[str, ...] = self._mbns[0].names

    def forward(self, *args: Any, bn: str | None = "normal", **kwargs: Any) -> Any:
        if bn is not None:
            set_branch(self, bn)
        return self.net(*args, **kwargs)
