"""TRADES (Zhang et al. 2019) KL term and loss, as used by ACL/AIR adversarial full fine-tuning.

With ``p = softmax(logits_nat)`` and ``p~ = softmax(logits_adv)`` for a batch of B samples::

    trades_kl  = (1/B) sum_b KL(p_b || p~_b) = (1/B) sum_b sum_c p_bc (log p_bc - log p~_bc)
    trades_loss = CE(logits_nat, y) + beta * trades_kl                      (beta = 6)

The clean target ``p`` is *not* detached (as in the ACL/AIR code, PUBLISHED_METHODS.md A1.3, A7.7).
Computed in fp32 even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["trades_kl", "trades_kl_per_sample", "trades_loss"]


def trades_kl_per_sample(logits_adv: torch.Tensor, logits_nat: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(logits_nat)_b || softmax(logits_adv)_b)`` for each row b ([B])."""
    with no_autocast(logits_adv):
        log_p = torch.log_softmax(fp32(logits_nat), dim=1)
        log_q = torch.log_softmax(fp32(logits_adv), dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def trades_kl(logits_adv: torch.Tensor, logits_nat: torch.Tensor) -> torch.Tensor:
    """Batch-mean ``KL(softmax nat || softmax adv)`` (PyTorch ``reduction='batchmean'``)."""
    return trades_kl_per_sample(logits_adv, logits_nat).mean()


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                beta: float = 6.0) -> torch.Tensor:
    """``CE(logits_nat, y) + beta * trades_kl(logits_adv, logits_nat)`` (fp32 scalar)."""
    with no_autocast(logits_nat):
        ce = F.cross_entropy(fp32(logits_nat), y)
    return ce + beta * trades_kl(logits_adv, logits_nat)
