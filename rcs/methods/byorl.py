"""BYORL (Gowal et al., ICLR 2021): BYOL with adversarial examples of the BYOL loss.

Online network = the model (encoder f, projector g: ``model.head``, published ``byol``
512-4096-BN-256) + a predictor q (same shape, an extra module); target network = an EMA copy
of encoder and projector (an extra module, no gradient), kept in the checkpoint. Single BN
(``model.bn_names: [normal]``). Per step, with two augmented views per image (interleaved)::

    z'    = g'(f'(v))                  target projections of the clean views (train-mode BN, as
                                       BYOL computes its targets; no gradient)
    v_adv = PGD_{||d|| <= eps} max_d  L_BYOL(q(g(f(v + d))), z')     (eval mode, frozen weights)
    L     = L_BYOL(q(g(f(v_adv))), z')  (rcs.losses.byol: each view regresses the target
                                         projection of the other view, symmetrised)

After each optimizer step the target moves toward the online weights (BYOL's schedule)::

    tau = 1 - (1 - tau_base) (cos(pi p) + 1) / 2       (p = samples seen / planned, tau_base .996)
    xi  <- tau xi + (1 - tau) theta                    (every parameter; buffers are copied)

The attack perturbs the online input only; the target always sees the clean views.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from rcs.attacks import pgd
from rcs.config.checks import check
from rcs.losses import byol_loss
from rcs.methods.base import (
    Method,
    RunContext,
    StepOutput,
    paired_views,
    register_method,
    single_branch,
)
from rcs.models.heads import BYOLHead
from rcs.models.multibn import plain_bn

__all__ = ["BYORL", "ema_update", "ema_rate"]


def ema_rate(progress: float, tau_base: float = 0.996) -> float:
    """BYOL's target decay ``1 - (1 - tau_base)(cos(pi p) + 1)/2`` at progress p in [0, 1]."""
    p = min(1.0, max(0.0, float(progress)))
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * p) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``xi <- tau * xi + (1 - tau) * theta`` for every parameter; buffers copied from online."""
    for xi, theta in zip(target.parameters(), online.parameters(), strict=True):
        xi.mul_(tau).add_(theta.detach(), alpha=1.0 - tau)
    for bt, bo in zip(target.buffers(), online.buffers(), strict=True):
        bt.copy_(bo)


@dataclass
class ByorlSettings:
    """``train.byorl``: BYORL's target EMA and predictor."""

    tau: float = 0.996
    """Base EMA rate of the target network, τ = 1 - (1 - τ_base)(cos(π p) + 1)/2 at run progress
    p (the share of the run done, in train.lr_schedule's unit), as in BYOL."""
    pred_hidden: int = 0
    """Hidden width of the predictor (0 = that of the projector head)."""

    def validate(self) -> None:
        check(0.0 <= self.tau <= 1.0, "train.byorl.tau must be in [0, 1]")
        check(self.pred_hidden >= 0, "train.byorl.pred_hidden must be >= 0")


@register_method("byorl", settings=ByorlSettings)
class BYORL(Method):
    name = "byorl"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn = single_branch(cfg, "byorl")
        self.online: nn.Module | None = None
        self.target: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.tau = cfg.train.byorl.tau

    def setup(self, ctx: RunContext) -> dict[str, nn.Module]:
        model = ctx.model
        if model.head is None:
            from rcs.errors import ConfigError

            raise ConfigError("train.method=byorl needs a projector head (model.head: byol)")
        d = int(model.out_dim)
        hidden = self.cfg.train.byorl.pred_hidden or self.cfg.model.head_hidden or None
        self.online = model
        self.predictor = BYOLHead(d, d, plain_bn, hidden=hidden)
        self.target = copy.deepcopy(model).requires_grad_(False)
        return {"predictor": self.predictor, "target": self.target}

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        a = self.cfg.train.attack
        v = paired_views(x, augment, generator, self.cfg)
        target, predictor = self.target, self.predictor
        with torch.no_grad():
            target.train()
            z_target = target(v, self.bn)

        def objective(xa: torch.Tensor) -> torch.Tensor:
            return byol_loss(predictor(model(xa, self.bn)), z_target)

        v_adv = pgd(objective, v, eps=a.eps, alpha=a.alpha, steps=a.steps,
                    random_start=a.random_start, generator=generator, model=[model, predictor])
        (p,) = forward([(v_adv, self.bn, "proj:predictor")])
        loss = byol_loss(p, z_target)
        return StepOutput(loss, {"tau": self.tau})

    def after_step(self, progress: float) -> None:
        self.tau = ema_rate(progress, self.cfg.train.byorl.tau)
        ema_update(self.target, self.online, self.tau)
