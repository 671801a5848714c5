"""The Method protocol: how one training step turns a batch into a loss.

A method receives the *wrapped* model (``forward``: one call that may run several branches, so
DDP sees exactly one forward per step) and the raw model (for attacks, which must not go through
DDP). It never steps the optimizer; the trainer does.

Hooks the trainer calls, in order (all optional; the defaults do nothing):

* ``setup(ctx)`` once, after the model is built and before a resume: returns extra modules
  (``name -> nn.Module``; e.g. BYORL's predictor and EMA target network, AdvCL's pseudo-label
  heads). The trainer moves them to the device, puts them inside the DDP forward (``forward``
  calls may use them, see :class:`MultiForward`), trains the parameters that require grad with
  the model's optimizer, and saves / restores them with the checkpoint (``extras``).
* ``state_dict()`` / ``load_state_dict(state)``: the method's own state (tensors and plain
  values, e.g. AdvCL's pseudo-labels), saved in the checkpoint (``method``) so a resume is exact.
* ``on_epoch_start(epoch, augment)`` before every epoch (also a resumed one), before that
  epoch's selection (so a selection sees the epoch's augmentation strength).
* ``prepare_batch(idx)`` with the dataset indices of the next batch, then ``step(...)``.
* ``after_step(progress)`` after each optimizer step; ``progress`` in [0, 1] = the share of the
  run done, in the lr schedule's unit (epochs done / epochs, or samples seen / planned).

``embedding_loss(outputs)`` (optional) gives the method's loss from its training forward's
outputs; the layer-wise contrastive option (``train.layerwise.stages``) needs it.

A method's own settings are a dataclass registered with it (``register_method(name,
settings=...)``): the config section ``train.<name>``. The registry
(:mod:`rcs.methods.registry`) lists the built-in method files and builds methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rcs.config.sections import register_section
from rcs.errors import ConfigError

if TYPE_CHECKING:
    from rcs.config.schema import RunConfig


@dataclass
class StepOutput:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunContext:
    """What :meth:`Method.setup` gets from the trainer: the raw model, the training dataset
    (``get_batch(idx)``), the device, the distributed environment and the run folder."""

    model: nn.Module
    dataset: Any
    device: torch.device
    env: Any = None
    out_dir: Path | None = None


OUTPUTS = ("proj", "features", "logits")


class MultiForward(nn.Module):
    """``forward([(x, bn, what), ...])`` -> list of outputs, in ONE module call.

    ``what`` is ``proj`` (head output), ``features`` or ``logits``, optionally followed by
    ``:<extra>`` to apply one of the method's extra modules to that output (e.g.
    ``proj:predictor`` = ``extras['predictor'](model(x, bn))``). Wrapping this in DDP gives one
    synchronised forward per step even when a method runs several BN branches, and keeps the
    gradients of trained extra modules synchronised too.
    """

    def __init__(self, model: nn.Module, extras: nn.ModuleDict | None = None):
        super().__init__()
        self.model = model
        self.extras = extras if extras is not None else nn.ModuleDict()

    def forward(self, calls: list[tuple[torch.Tensor, str, str]]) -> list[Any]:
        out = []
        for x, bn, what in calls:
            base, _, extra = what.partition(":")
            if base == "proj":
                y = self.model(x, bn)
            elif base == "features":
                y = self.model.features(x, bn)
            elif base == "logits":
                y = self.model.logits(x, bn)
            else:
                raise ValueError(f"unknown output '{what}': use one of {', '.join(OUTPUTS)}, "
                                 "optionally followed by ':<extra module>'")
            if extra:
                if extra not in self.extras:
                    raise ValueError(f"output '{what}': no extra module '{extra}' (this method "
                                     f"has {sorted(self.extras) or 'none'})")
                y = self.extras[extra](y)
            out.append(y)
        return out


class Method:
    """Base class. Subclasses set ``name`` and implement :meth:`step`."""

    name = "base"
    needs_labels = False
    """SAT-style methods need labels and a classifier."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def setup(self, ctx: RunContext) -> dict[str, nn.Module]:
        """Called once by the trainer; returns extra modules (see the module docstring)."""
        return {}

    def on_epoch_start(self, epoch: int, augment: Any) -> dict[str, float]:
        """Hook for per-epoch schedules (DynACL's augmentation strength). Returns metrics."""
        return {}

    def prepare_batch(self, idx: np.ndarray) -> None:
        """Dataset indices of the batch the next :meth:`step` gets (AdvCL's pseudo-labels)."""

    def step(self, forward: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             augment: Any, generator: torch.Generator) -> StepOutput:
        """Loss of one batch. ``x`` is uint8 [B,3,H,W] on the device, ``y`` labels or None."""
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """After each optimizer step (BYORL's EMA); ``progress`` in [0, 1] of the run."""

    def state_dict(self) -> dict[str, Any]:
        """Method state for the checkpoint (tensors / plain values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` from a checkpoint."""

    @classmethod
    def selection_loss(cls) -> str:
        """The per-sample loss whose head gradients every gradient-based selector (RCS and the
        gradient baselines) takes for this method: ``acl`` | ``air`` | ``sat`` (see
        :data:`SELECTION_LOSSES`). A class-level choice, so selectors can ask it by method name
        (:func:`selection_loss_of`); override it as a classmethod.

        Methods with a schedule select with their loss at its plain weights, as the published
        DynACL-RCS, which selects with the plain ACL loss, not DynACL's annealed weights:
        ``dynacl`` -> ``acl``, ``dynacl_air`` -> ``air`` with w = 0 (ACL-AIR's objective)."""
        return "acl"

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The method's loss as a function of the outputs of its training forward (one
        ``forward`` call per step; outputs in call order). Methods that define it (and compute
        their step's loss with it) work with the layer-wise contrastive option
        (``train.layerwise.stages``), which applies it to each chosen stage's projections."""
        raise NotImplementedError(f"method {self.name} does not define embedding_loss")


class MethodWrapper(Method):
    """A method that adds to another (``inner``): every hook goes to ``inner`` unless the
    wrapper overrides it (the Tikhonov penalty, the layer-wise contrastive loss)."""

    def __init__(self, inner: Method):
        self.inner, self.cfg = inner, inner.cfg
        self.name, self.needs_labels = inner.name, inner.needs_labels

    def setup(self, ctx: RunContext) -> dict[str, nn.Module]:
        return self.inner.setup(ctx)

    def on_epoch_start(self, epoch: int, augment: Any) -> dict[str, float]:
        return self.inner.on_epoch_start(epoch, augment)

    def prepare_batch(self, idx: np.ndarray) -> None:
        self.inner.prepare_batch(idx)

    def after_step(self, progress: float) -> None:
        self.inner.after_step(progress)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def selection_loss(self) -> str:  # type: ignore[override]
        return self.inner.selection_loss()

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return self.inner.embedding_loss(outputs)


def has_embedding_loss(method: Method) -> bool:
    """Whether ``method`` overrides :meth:`Method.embedding_loss`."""
    return type(method).embedding_loss is not Method.embedding_loss


METHODS: dict[str, Callable[[RunConfig], Method]] = {}
"""Registered methods, name -> class; filled by :func:`register_method` as the method files
are imported (:func:`rcs.methods.registry.load_methods` imports the built-in ones)."""


def register_method(name: str, settings: type | None = None
                    ) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a method to :data:`METHODS` under ``name``; ``settings`` (a
    dataclass) becomes its config section ``train.<name>`` (:func:`register_settings`)."""
    def deco(cls: type[Method]) -> type[Method]:
        METHODS[name] = cls
        if settings is not None:
            register_settings(name, settings)
        return cls

    return deco


def register_settings(name: str, settings: type, old_keys: dict[str, str] | None = None) -> type:
    """Make dataclass ``settings`` the config section ``train.<name>``: its fields (defaults and
    docstrings) become the keys ``train.<name>.<field>`` of YAML, ``--set`` and ``rcs config
    keys``; its ``validate()`` (optional) runs with the config's. The flat keys it replaced
    (default ``<name>_<field>``; else ``old_keys``: flat key -> field) are refused with the new
    name. Used for settings several methods share (``train.air``, ``train.memory``)."""
    return register_section("train", name, settings, old_keys)


def interleave(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """[B,...] x 2 -> [2B,...] with rows (v1[0], v2[0], v1[1], v2[1], ...)."""
    return torch.stack([v1, v2], dim=1).flatten(0, 1)


def paired_views(x: torch.Tensor, augment: Any, generator: torch.Generator,
                 cfg: RunConfig) -> torch.Tensor:
    """Two augmented views of every image, interleaved ([2B]); channels_last when configured."""
    v = interleave(augment(x, generator=generator), augment(x, generator=generator))
    if cfg.train.channels_last and v.is_cuda:
        v = v.contiguous(memory_format=torch.channels_last)
    return v


def at_least_two(x: torch.Tensor) -> torch.Tensor:
    """``x`` with a single image repeated twice: a train-mode BatchNorm1d needs two rows per
    forward, and the last batch of a coreset epoch may hold one image (as AdvCL does)."""
    return x.repeat(2, *([1] * (x.dim() - 1))) if x.shape[0] == 1 else x


def two_views(x: torch.Tensor, augment: Any, generator: torch.Generator,
              cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views ``(t1, t2)`` ([B] each); channels_last when set."""
    t1, t2 = augment(x, generator=generator), augment(x, generator=generator)
    if cfg.train.channels_last and t1.is_cuda:
        t1, t2 = (v.contiguous(memory_format=torch.channels_last) for v in (t1, t2))
    return t1, t2


def single_branch(cfg: RunConfig, method: str) -> str:
    """The one BN branch of a single-BN method (RoCL, BYORL, Tikhonov): the model must have
    exactly one (``model.bn_names: [normal]``), as published; the fine-tuning exports it."""
    names = list(cfg.model.bn_names)
    if len(names) != 1:
        raise ConfigError(
            f"train.method={method} trains a single-BN network (as published), but "
            f"model.bn_names={names}; set model.bn_names=[normal] (e.g. --set "
            f"'model.bn_names=[normal]'), or use configs/cifar10_{method}_rcs.yaml")
    return names[0]
