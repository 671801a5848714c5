"""The Method protocol: how one training step turns a batch into a loss.

A method receives the *wrapped* model (``forward``: one call that may run several branches, so
DDP sees exactly one forward per step) and the raw model (for attacks, which must not go through
DDP). It never steps the optimizer; the trainer does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rcs.errors import ConfigError

if TYPE_CHECKING:
    from rcs.config.schema import RunConfig


@dataclass
class StepOutput:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class MultiForward(nn.Module):
    """``forward([(x, bn, what), ...])`` -> list of outputs, in ONE module call.

    ``what`` is ``proj`` (head output), ``features`` or ``logits``. Wrapping this in DDP gives
    one synchronised forward per step even when a method runs several BN branches.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, calls: list[tuple[torch.Tensor, str, str]]) -> list[torch.Tensor]:
        out = []
        for x, bn, what in calls:
            if what == "proj":
                out.append(self.model(x, bn))
            elif what == "features":
                out.append(self.model.features(x, bn))
            elif what == "logits":
                out.append(self.model.logits(x, bn))
            else:
                raise ValueError(f"unknown output '{what}'")
        return out


class Method:
    """Base class. Subclasses set ``name`` and implement :meth:`step`."""

    name = "base"
    needs_labels = False
    """SAT-style methods need labels and a classifier."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def on_epoch_start(self, epoch: int, augment: Any) -> dict[str, float]:
        """Hook for per-epoch schedules (DynACL's augmentation strength). Returns metrics."""
        return {}

    def step(self, forward: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             augment: Any, generator: torch.Generator) -> StepOutput:
        """Loss of one batch. ``x`` is uint8 [B,3,H,W] on the device, ``y`` labels or None."""
        raise NotImplementedError

    def selection_loss(self) -> str:
        """Which per-sample loss RCS uses for this method's gradients: acl | air | sat."""
        return "acl"


METHODS: dict[str, Callable[[RunConfig], Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        METHODS[name] = cls
        return cls

    return deco


_BUILTIN = ("acl", "dynacl", "air", "sat")  # modules registering methods


def build_method(name: str, cfg: RunConfig) -> Method:
    for mod in _BUILTIN:
        importlib.import_module(f"rcs.methods.{mod}")
    if name not in METHODS:
        raise ConfigError(f"unknown train.method '{name}'; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)


def interleave(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """[B,...] x 2 -> [2B,...] with rows (v1[0], v2[0], v1[1], v2[1], ...)."""
    return torch.stack([v1, v2], dim=1).flatten(0, 1)
