"""Cross-entropy for supervised adversarial training (SAT, Madry et al. 2018), in fp32.

    CE(logits, y) = (1/B) sum_b [ logsumexp_c logits_bc - logits_{b, y_b} ]

SAT trains on PGD-10 examples only: ``L = CE(f(x_adv), y)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["cross_entropy", "sat_loss"]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` [B, C] against int labels ``y`` [B], computed in fp32."""
    with no_autocast(logits):
        return F.cross_entropy(fp32(logits), y, reduction=reduction)


def sat_loss(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SAT (Madry PGD-AT) loss: mean cross-entropy on adversarial logits."""
    return cross_entropy(logits_adv, y)
