"""Layer-wise contrastive loss: the method's own loss, also on chosen encoder stages.

With ``train.layerwise.stages = [k, ...]`` and ``train.layerwise.weights = [α_k, ...]``,
:func:`rcs.methods.base.build_method` wraps the method in :class:`LayerwiseContrastive`::

    L = L_method + Σ_k α_k L_method(g_k(pool(stage_k)))

Stage k's output (``encoder.<stage_names[k-1]>``, e.g. ``layer2`` of a ResNet) is average-pooled
and projected by its own head ``g_k`` (Linear(C_k, C_k) - ReLU - Linear(C_k, d), d the
projection dim; extra modules trained with the model and kept in checkpoints). The heads run
inside the step's training forward (forward hooks that are live only during that call), so
under DDP they are synchronised like the model, and attacks or selection passes through the
model never touch them. ``L_method(...)`` is the method's :meth:`Method.embedding_loss` applied
to the stage projections in place of the final ones - same views, same pairs, same negatives:
ACL's two streams, RoCL's three views, IFM's shifted similarities, and so on. Methods without an
``embedding_loss`` (AdvCL's pseudo-label heads, BYORL's predictor/target, AdCo / CaCo's memory
bank living in the final embedding space, SAT) are refused with a ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.config.checks import check
from rcs.data import to_float
from rcs.errors import ConfigError
from rcs.methods.base import (
    Method,
    MethodWrapper,
    RunContext,
    StepOutput,
    has_embedding_loss,
    register_settings,
)

__all__ = ["LayerwiseContrastive", "stage_head"]


@dataclass
class LayerwiseSettings:
    """``train.layerwise``: the layer-wise contrastive loss any method with an embedding loss can
    add (:class:`LayerwiseContrastive`)."""

    stages: list[int] = field(default_factory=list)
    """Encoder stages k (1-based) whose pooled output gets its own projection head and
    contrastive loss L_k; L = L_method + Σ_k α_k L_k. Empty = off."""
    weights: list[float] = field(default_factory=list)
    """α_k, one per entry of stages."""

    def validate(self) -> None:
        check(len(self.weights) == len(self.stages),
              f"train.layerwise.weights={self.weights} needs one weight per entry of "
              f"train.layerwise.stages={self.stages}")
        check(all(k >= 1 for k in self.stages) and len(set(self.stages)) == len(self.stages),
              f"train.layerwise.stages={self.stages} must be distinct 1-based stage numbers "
              "(e.g. [2, 3])")


register_settings("layerwise", LayerwiseSettings)


def stage_head(channels: int, out_dim: int) -> nn.Module:
    """``Linear(C, C) - ReLU - Linear(C, out_dim)`` on pooled stage features."""
    return nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                         nn.Linear(channels, out_dim))


class _StageForward:
    """Calls ``forward`` with the stage hooks of ``owner`` live; records what they captured."""

    def __init__(self, forward: Any, owner: LayerwiseContrastive):
        self.forward, self.owner = forward, owner
        self.captured: list[list[tuple[int, torch.Tensor]]] = []

    def __call__(self, calls: list[tuple[torch.Tensor, str, str]]) -> list[Any]:
        self.owner._capture = []
        try:
            out = self.forward(calls)
        finally:
            self.captured.append(self.owner._capture)
            self.owner._capture = None
        return out


class LayerwiseContrastive(MethodWrapper):
    """``inner`` + Σ_k α_k · inner.embedding_loss(stage-k projections)."""

    def __init__(self, inner: Method):
        super().__init__(inner)
        t = self.cfg.train
        self.stages = [int(k) for k in t.layerwise.stages]
        self.weights = [float(a) for a in t.layerwise.weights]
        if len(self.weights) != len(self.stages):
            raise ConfigError("train.layerwise.weights needs one weight per entry of "
                              "train.layerwise.stages")
        if not has_embedding_loss(inner):
            raise ConfigError(
                f"train.method={inner.name} has no embedding_loss, so the layer-wise contrastive "
                "loss cannot be applied to it; use it with acl, dynacl, air, rocl, tikhonov, "
                "clae, ifm, hcl, mochi, aacl, arocl or rush, or set train.layerwise.stages=[]")
        self._capture: list[tuple[int, torch.Tensor]] | None = None
        self.heads: nn.ModuleDict | None = None

    # ------------------------------------------------------------------ stages
    def setup(self, ctx: RunContext) -> dict[str, nn.Module]:
        extras = dict(self.inner.setup(ctx))
        encoder = ctx.model.encoder
        names = list(getattr(encoder, "stage_names", []))
        bad = [k for k in self.stages if k > len(names)]
        if not names or bad:
            raise ConfigError(f"train.layerwise.stages={self.stages}: the encoder has "
                              f"{len(names)} stages ({names}); choose stages in 1..{len(names)}")
        channels = self._stage_channels(ctx, [names[k - 1] for k in self.stages])
        out_dim = int(ctx.model.out_dim)
        self.heads = nn.ModuleDict({str(k): stage_head(c, out_dim)
                                    for k, c in zip(self.stages, channels)})
        for k in self.stages:
            getattr(encoder, names[k - 1]).register_forward_hook(self._hook(k))
        extras["layerwise_heads"] = self.heads
        return extras

    @torch.no_grad()
    def _stage_channels(self, ctx: RunContext, names: list[str]) -> list[int]:
        """Channels of each stage's output, from one eval-mode forward of two images."""
        model, seen = ctx.model, {}
        hooks = [getattr(model.encoder, n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, int(o.shape[1]))) for n in names]
        was = model.training
        try:
            model.eval()
            x, _ = ctx.dataset.get_batch(np.arange(min(2, len(ctx.dataset))))
            model.features(to_float(x.to(ctx.device)), model.bn_names[0])
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
        return [seen[n] for n in names]

    def _hook(self, k: int):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if self._capture is not None:
                pooled = output.float().mean(dim=(2, 3)) if output.dim() == 4 else output
                self._capture.append((k, self.heads[str(k)](pooled)))
        return hook

    # ------------------------------------------------------------------ the step
    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        rec = _StageForward(forward, self)
        out = self.inner.step(rec, model, x, y, augment, generator)
        if len(rec.captured) != 1:
            raise RuntimeError(f"the layer-wise loss needs exactly one training forward per step; "
                               f"method {self.name} made {len(rec.captured)}")
        captured = rec.captured[0]
        loss, metrics = out.loss, dict(out.metrics)
        for k, alpha in zip(self.stages, self.weights):
            outs = [z for kk, z in captured if kk == k]
            l_k = self.inner.embedding_loss(outs)
            loss = loss + alpha * l_k
            metrics[f"layer{k}"] = float(l_k.detach())
        metrics["loss_final"] = float(out.loss.detach())
        return StepOutput(loss, metrics)
