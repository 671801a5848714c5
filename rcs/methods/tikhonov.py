"""Contrastive Tikhonov regularisation: the input-gradient penalty, alone or on any method.

``tikhonov`` (the method): plain NT-Xent on two clean augmented views (single BN, no attack)
plus the penalty of ``rcs.losses.tikhonov``, by double back-propagation::

    L_T = NTX(z) + (lambda / 2) sum_k (||grad_{x~_2k-1} NTX||^2 + ||grad_{x~_2k} NTX||^2) / 2

:class:`TikhonovPenalty` is the wrapper :func:`rcs.methods.base.build_method` puts around any
method when ``train.tikhonov.lam > 0``: it hands the method a ``forward`` that records every
image batch the method feeds the network (as leaves that require grad), and adds
``(lambda/4) sum_rows ||grad_row L||^2`` over all of them (clean and adversarial views alike) to
the method's loss. Everything else (hooks, state, extra modules) is the wrapped method's.

Not supported with several processes (the cross-rank gather of the negatives has no second
derivative) or with ``train.compile`` (double backward through compiled graphs); both are
refused at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rcs.config.checks import check
from rcs.errors import ConfigError
from rcs.losses import input_gradient_penalty, nt_xent
from rcs.methods.base import (
    Method,
    MethodWrapper,
    StepOutput,
    paired_views,
    register_method,
    single_branch,
)
from rcs.utils.distributed import gather_batch


@dataclass
class TikhonovSettings:
    """``train.tikhonov``: the contrastive Tikhonov (input-gradient) penalty, for any method."""

    lam: float = 0.0
    """Penalty weight λ: L + (λ/2) Σ_k (‖∇_{x̃_2k-1} L‖² + ‖∇_{x̃_2k} L‖²)/2 by double
    back-propagation. 0 = off; > 0 adds it to any method's loss (over every image the method's
    forward sees); method tikhonov needs it (published values 0.1, 1, 10)."""

    OLD_KEYS: ClassVar[dict[str, str]] = {"tikhonov_lambda": "lam"}

    def validate(self) -> None:
        check(self.lam >= 0, "train.tikhonov.lam must be >= 0 (0 = off)")


@register_method("tikhonov", settings=TikhonovSettings)
class Tikhonov(Method):
    """NT-Xent of two clean views; the penalty comes from :class:`TikhonovPenalty`."""

    name = "tikhonov"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn = single_branch(cfg, "tikhonov")

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        v = paired_views(x, augment, generator, self.cfg)
        return StepOutput(self.embedding_loss(forward([(v, self.bn, "proj")])))

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return nt_xent(gather_batch(outputs[0]), self.cfg.train.temperature)


class _RecordingForward:
    """Calls ``forward`` with every float image batch replaced by a leaf requiring grad."""

    def __init__(self, forward: nn.Module):
        self.forward = forward
        self.inputs: list[torch.Tensor] = []

    def __call__(self, calls: list[tuple[torch.Tensor, str, str]]) -> list[Any]:
        out = []
        for x, bn, what in calls:
            if x.is_floating_point():
                x = x.detach().requires_grad_(True)
                self.inputs.append(x)
            out.append((x, bn, what))
        return self.forward(out)


class TikhonovPenalty(MethodWrapper):
    """``inner`` + the input-gradient penalty with weight ``lam`` (see the module docstring)."""

    def __init__(self, inner: Method, lam: float):
        super().__init__(inner)
        self.lam = float(lam)
        d = torch.distributed
        if d.is_available() and d.is_initialized() and d.get_world_size() > 1:
            raise ConfigError("train.tikhonov.lam > 0 runs in one process only (the penalty "
                              "differentiates through the cross-rank gather twice); run without "
                              "torchrun / DDP or set train.tikhonov.lam=0")
        if self.cfg.train.compile:
            raise ConfigError("train.tikhonov.lam > 0 needs double backward, which "
                              "torch.compile does not support; set train.compile=false")

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        rec = _RecordingForward(forward)
        out = self.inner.step(rec, model, x, y, augment, generator)
        if not rec.inputs:
            raise RuntimeError(f"method {self.name} fed no image batch to the forward; the "
                               "Tikhonov penalty has no input to differentiate")
        penalty = input_gradient_penalty(out.loss, rec.inputs, self.lam)
        metrics = dict(out.metrics, loss_base=float(out.loss.detach()),
                       tikhonov=float(penalty.detach()))
        return StepOutput(out.loss + penalty, metrics)
