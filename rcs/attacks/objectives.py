"""Attack objectives: small factories returning ``loss_fn(x_adv) -> scalar`` for ``pgd``.

``model_fn`` is any callable ``x -> output`` (e.g. ``lambda x: model(x, "pgd")``). Targets given
to a factory (labels, clean logits, clean projections) are detached. All losses are fp32.

* ``contrastive``:   NTX(model_fn(x_adv)) over the batch of (interleaved) adversarial views (ACL).
* ``cross_entropy``: mean CE(model_fn(x_adv), y) (Madry PGD, ALF, PGD-20 evaluation).
* ``kl_trades``:     sum_b KL(softmax logits_nat_b || softmax model_fn(x_adv)_b) (TRADES inner max;
                     the sum, as in the reference, so per-sample gradients do not shrink with B).
* ``rd``:            RD(z_nat, model_fn(x_adv)) with ``distance`` 'kl' or 'minmax_kl' (RCS).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rcs.losses.ce import cross_entropy as _ce
from rcs.losses.ntxent import nt_xent
from rcs.losses.rd import RD_DISTANCES, rd_distance
from rcs.losses.trades import trades_kl_per_sample

__all__ = ["contrastive", "cross_entropy", "kl_trades", "rd", "LossFn"]

LossFn = Callable[[torch.Tensor], torch.Tensor]
ModelFn = Callable[[torch.Tensor], torch.Tensor]


def contrastive(model_fn: ModelFn, temperature: float = 0.5) -> LossFn:
    """``x_adv -> NTX(model_fn(x_adv), temperature)`` (ACL contrastive PGD objective)."""
    def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
        return nt_xent(model_fn(x_adv), temperature)
    return loss_fn


def cross_entropy(model_fn: ModelFn, y: torch.Tensor) -> LossFn:
    """``x_adv -> mean CE(model_fn(x_adv), y)``."""
    y = y.detach()

    def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
        return _ce(model_fn(x_adv), y)
    return loss_fn


def kl_trades(model_fn: ModelFn, logits_nat: torch.Tensor) -> LossFn:
    """``x_adv -> sum_b KL(softmax logits_nat || softmax model_fn(x_adv))`` (TRADES attack)."""
    logits_nat = logits_nat.detach()

    def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
        return trades_kl_per_sample(model_fn(x_adv), logits_nat).sum()
    return loss_fn


def rd(model_fn: ModelFn, z_nat: torch.Tensor, distance: str = "kl") -> LossFn:
    """``x_adv -> RD(z_nat, model_fn(x_adv))`` (RCS validation attack)."""
    if distance not in RD_DISTANCES:
        raise ValueError(f"RD distance {distance!r} is not one of {', '.join(RD_DISTANCES)}")
    z_nat = z_nat.detach()

    def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
        return rd_distance(z_nat, model_fn(x_adv), distance)
    return loss_fn
