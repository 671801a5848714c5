"""Optimisers: LARS as in the ACL/AIR/DynACL code (PUBLISHED_METHODS.md A0.5) and an SGD builder.

LARS step for every parameter w with gradient g (all parameters, BN and biases included)::

    local_lr = trust_coef * ||w|| / (||g|| + wd * ||w||)    (= 1 if ||w|| or ||g|| < 1e-15)
    buf      = momentum * buf + lr * local_lr * (g + wd * w)  (buf starts at 0; lr is inside)
    w        = w - buf

The norms are computed on the device (no host sync). The momentum buffer is kept in the
optimizer state as ``momentum_buffer``, so ``state_dict``/``load_state_dict`` resume exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from rcs.errors import ConfigError

__all__ = ["LARS", "build_optimizer"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017), ACL formulation (see module doc)."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 1e-6, trust_coef: float = 1e-3) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coef < 0:
            raise ValueError("LARS lr, momentum, weight_decay and trust_coef must be >= 0")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coef": trust_coef}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One LARS update of every parameter that has a gradient; returns ``closure()``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m = group["lr"], group["momentum"]
            wd, eta = group["weight_decay"], group["trust_coef"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(g)
                trust = eta * w_norm / (g_norm + wd * w_norm)
                small = (w_norm < 1e-15) | (g_norm < 1e-15)
                local_lr = torch.where(small, torch.ones_like(trust), trust)
                d_p = g.add(p, alpha=wd).mul_(local_lr * lr)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(m).add_(d_p)
                p.sub_(buf)
        return loss


def build_optimizer(params: Iterable[Any], cfg: Any) -> torch.optim.Optimizer:
    """Build ``cfg.optimizer`` ('lars' | 'sgd') from a ``TrainConfig`` (lr, momentum, wd, ...).

    The learning rate is the base lr; the trainer overwrites it every step from the schedule.
    """
    name = cfg.optimizer
    if name == "lars":
        return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                    trust_coef=cfg.trust_coef)
    if name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("train.nesterov=true needs train.momentum > 0 (e.g. 0.9)")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    raise ConfigError(f"train.optimizer={name!r} is not one of lars, sgd")
