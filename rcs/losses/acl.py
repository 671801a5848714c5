"""ACL dual-stream loss and the DynACL augmentation-strength / loss-weight schedule.

ACL (Jiang et al. 2020, ``train_simCLR.py``)::

    L_ACL = ( w_nat * NTX(z_nat) + w_adv * NTX(z_adv) ) / 2          (w_nat = w_adv = 1)

``z_nat`` = clean views through the ``normal`` BN, ``z_adv`` = their PGD versions through ``pgd``.

DynACL (Luo et al. 2023) as used with RCS (``DynACL_RCS.py``, PUBLISHED_METHODS.md R2.1)::

    s(e) = 1 - floor((e - 1) / P) * step            (augmentation strength, epoch e is 1-based)
    w(s) = (2/3) * (1 - s)
    L    = ( (1 - w) NTX(z_nat) + (1 + w) NTX(z_adv) ) / 2

The DynACL repository writes the same loss as ``[(2 - w_adv) NTX(nat) + w_adv NTX(adv)] / 2``
with ``w_adv = 1 + (epoch // 50)(50/epochs)(2/3)`` (PUBLISHED_METHODS.md A2): identical with
``w_adv = 1 + w``, except that its weight steps one epoch before its augmentation reload. We follow
the RCS reference and AIR (``w = (2/3)(1 - s)`` from the same ``s`` that sets the augmentation),
so weight and augmentation move together.
"""

from __future__ import annotations

import math

import torch

from rcs.losses.ntxent import nt_xent

__all__ = ["acl_loss", "dynacl_loss", "dynacl_strength", "dynacl_weight", "dynacl_period"]


def acl_loss(z_nat: torch.Tensor, z_adv: torch.Tensor, temperature: float = 0.5,
             w_nat: float = 1.0, w_adv: float = 1.0) -> torch.Tensor:
    """``(w_nat * NTX(z_nat) + w_adv * NTX(z_adv)) / 2`` (fp32), both [2B, d] interleaved."""
    return (w_nat * nt_xent(z_nat, temperature) + w_adv * nt_xent(z_adv, temperature)) / 2


def dynacl_loss(z_nat: torch.Tensor, z_adv: torch.Tensor, temperature: float = 0.5,
                w: float = 0.0) -> torch.Tensor:
    """DynACL: ``((1 - w) NTX(z_nat) + (1 + w) NTX(z_adv)) / 2``; ``w = dynacl_weight(s)``."""
    return acl_loss(z_nat, z_adv, temperature, w_nat=1.0 - w, w_adv=1.0 + w)


def dynacl_period(total_epochs: int, period: int = 50, reference_epochs: int = 1000) -> float:
    """Period scaled to the run: ``max(1, period * total_epochs / reference_epochs)`` epochs.

    The published schedule drops s by 0.05 every 50 of 1000 epochs (20 levels 1.00 ... 0.05);
    scaling the period keeps the same 20 levels over a shorter run. It may be fractional
    (e.g. 1.5 epochs for a 30-epoch run); it is never below one epoch, so runs shorter than
    ``reference_epochs / period`` (= 20) epochs stop early on the way down.
    """
    if total_epochs <= 0 or period <= 0:
        raise ValueError("total_epochs and period must be > 0")
    return max(1.0, period * total_epochs / reference_epochs)


def dynacl_strength(epoch: int, total_epochs: int, period: int = 50, step: float = 0.05) -> float:
    """Augmentation strength ``s = 1 - floor((epoch - 1) / P) * step`` (1-based epoch), P scaled.

    ``P = dynacl_period(total_epochs, period)``; s is clipped to [0, 1]. With 1000 epochs:
    s = 1.0 for epochs 1-50, 0.95 for 51-100, ..., 0.05 for 951-1000.
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    p = dynacl_period(total_epochs, period)
    # a tiny tolerance keeps e.g. 50.000000001 from flooring one level too low
    k = math.floor((epoch - 1) / p + 1e-9)
    return min(1.0, max(0.0, round(1.0 - k * step, 12)))


def dynacl_weight(s: float) -> float:
    """DynACL / DynACL-AIR loss weight ``w = (2/3) * (1 - s)``."""
    return (2.0 / 3.0) * (1.0 - s)
