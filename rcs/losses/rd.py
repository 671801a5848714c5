"""Representational distance (RD), the RCS validation loss (PUBLISHED_METHODS.md R1.4).

``rd_kl`` (default; the ImageNet-32 reference and PUBLISHED_METHODS.md D4.3, mean over samples)::

    RD(z_nat, z_adv) = (1/N) sum_n KL(softmax z_nat_n || softmax z_adv_n)

``rd_minmax_kl`` (the small-scale published ``kl_loss``): each row is min-max scaled,
``m(z) = (z - min z) / (max z - min z)``, then with ``q = m(z_adv) + 1e-8`` and
``p = m(z_nat) + 1e-8`` the elementwise mean over N x d entries::

    RD_minmax = (1/(N d)) sum_{n,j} q_nj (log q_nj - log p_nj)          ("KL(adv || nat)")

These are not distributions; the value just reproduces the reference. Unlike the reference, the
inputs are not modified in place, and a constant row (max = min) is divided by a tiny floor
instead of producing NaN. Both are computed in fp32.
"""

from __future__ import annotations

import torch

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["rd_kl", "rd_kl_per_sample", "rd_minmax_kl", "minmax_rows", "rd_distance",
           "RD_DISTANCES"]

RD_DISTANCES = ("kl", "minmax_kl")


def rd_kl_per_sample(z_nat: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """``KL(softmax z_nat_n || softmax z_adv_n)`` per row ([N])."""
    with no_autocast(z_nat):
        log_p = torch.log_softmax(fp32(z_nat), dim=1)
        log_q = torch.log_softmax(fp32(z_adv), dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def rd_kl(z_nat: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ``KL(softmax z_nat || softmax z_adv)``."""
    return rd_kl_per_sample(z_nat, z_adv).mean()


def minmax_rows(z: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """Out-of-place per-row min-max scaling to [0, 1]: ``(z - min) / max(max - min, floor)``."""
    lo = z.amin(dim=1, keepdim=True)
    span = (z.amax(dim=1, keepdim=True) - lo).clamp(min=floor)
    return (z - lo) / span


def rd_minmax_kl(z_nat: torch.Tensor, z_adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Published variant ``mean_{n,j} q (log q - log p)``, q = m(adv) + eps, p = m(nat) + eps."""
    with no_autocast(z_nat):
        q = minmax_rows(fp32(z_adv)) + eps
        p = minmax_rows(fp32(z_nat)) + eps
        return (q * (q.log() - p.log())).mean()


def rd_distance(z_nat: torch.Tensor, z_adv: torch.Tensor, distance: str = "kl") -> torch.Tensor:
    """Dispatch on ``distance`` in ``RD_DISTANCES`` (``selection.rd_distance``)."""
    if distance == "kl":
        return rd_kl(z_nat, z_adv)
    if distance == "minmax_kl":
        return rd_minmax_kl(z_nat, z_adv)
    raise ValueError(f"RD distance {distance!r} is not one of {', '.join(RD_DISTANCES)}")
