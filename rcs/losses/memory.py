"""Learnable memory banks of AdCo (Hu et al., CVPR 2021) and CaCo (Wang et al., 2022).

The bank holds K raw vectors ``b_j`` (rows of ``[K, d]``) used through their directions
``d_j = b_j / ||b_j||``; queries are L2-normalised, ``q̂_i = q_i / ||q_i||``, and
``s_ij = <q̂_i, d_j>``. Both methods train the encoder on a cross-entropy over these
similarities and update the bank with its own SGD (momentum m, weight decay λ, lr η) after
every encoder step, from the step's (detached) queries, at the memory temperature τ_m::

    v <- m v - U + λ b          b <- b - η v                           (memory_sgd_step)

**AdCo** - negatives are adversaries. Logits of query i: its similarities to every key of the
(global) batch ``k̂_l`` (from the momentum key encoder; the own key is the positive) and to
the bank::

    L_AdCo = (1/B) Σ_i -log softmax([<q̂_i, k̂_l>]_l ++ [s_ij]_j / t)[i]          (t = 0.12)

and the bank ascends the same loss at τ_m (published 0.02): ``U = ∂L/∂b`` in closed form, with
``p_ij`` the softmax probability of bank entry j at τ_m::

    ∂L/∂b_j = (1 / (B τ_m ||b_j||)) [ Σ_i p_ij q̂_i - (Σ_i p_ij s_ij) d_j ]

**CaCo** - positives cooperate, negatives are adversaries. Logits are the bank only; the
positive of query i is the entry closest to the key of its other view,
``π(i) = argmax_j <k̂_i, d_j>``::

    L_CaCo = (1/B) Σ_i -log softmax([s_ij]_j / t)[π(i)]                        (t = 0.08)

The bank descends the loss on each query's positive entry and ascends it on the others:
``U = Σ_i σ_ij ∂L_i/∂b_j`` (σ = -1 for j = π(i), +1 otherwise), i.e. with ``c_ij = p_ij`` for
``j ≠ π(i)`` and ``c_ij = 1 - p_ij`` for ``j = π(i)``::

    U_j = (1 / (B τ_m ||b_j||)) [ Σ_i c_ij q̂_i - (Σ_i c_ij s_ij) d_j ]

Computed in fp32 (fp64 inputs stay fp64) even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast

__all__ = [
    "adco_logits", "adco_loss", "adco_memory_grad", "caco_positive_index", "caco_loss",
    "caco_memory_direction", "memory_sgd_step",
]


def _check(q: torch.Tensor, bank: torch.Tensor) -> None:
    if q.dim() != 2 or bank.dim() != 2 or q.shape[1] != bank.shape[1]:
        raise ValueError(f"queries [B, d] and bank [K, d] must share d, got {tuple(q.shape)} "
                         f"and {tuple(bank.shape)}")


def adco_logits(q: torch.Tensor, keys: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``[<q̂_i, k̂_l>]_l ++ [<q̂_i, d_j>]_j`` ([B, B_k + K]; keys and bank carry no gradient)."""
    _check(q, bank)
    qn = F.normalize(q, dim=1)
    kn = F.normalize(keys.detach(), dim=1)
    dn = F.normalize(bank.detach(), dim=1)
    return torch.cat([qn @ kn.t(), qn @ dn.t()], dim=1)


def adco_loss(q: torch.Tensor, keys: torch.Tensor, bank: torch.Tensor,
              temperature: float = 0.12) -> torch.Tensor:
    """``L_AdCo``: query i's positive is key i (``keys`` and ``q`` aligned by image)."""
    if keys.shape != q.shape:
        raise ValueError(f"AdCo needs one key per query, got {tuple(keys.shape)} keys for "
                         f"{tuple(q.shape)} queries")
    with no_autocast(q):
        logits = adco_logits(fp32(q), fp32(keys), fp32(bank)) / temperature
        labels = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, labels)


def _bank_grad(qn: torch.Tensor, bank: torch.Tensor, coef: torch.Tensor,
               sims: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(1 / (B τ ||b_j||)) [Σ_i c_ij q̂_i - (Σ_i c_ij s_ij) d_j]`` for every row j."""
    norm = bank.norm(dim=1, keepdim=True)
    d = bank / norm
    g = coef.t() @ qn - (coef * sims).sum(dim=0)[:, None] * d
    return g / (qn.shape[0] * temperature * norm)


@torch.no_grad()
def adco_memory_grad(q: torch.Tensor, keys: torch.Tensor, bank: torch.Tensor,
                     temperature: float = 0.02) -> torch.Tensor:
    """Closed-form ``∂L_AdCo/∂b`` ([K, d]) at the memory temperature (see the module doc)."""
    q, keys, bank = fp32(q.detach()), fp32(keys.detach()), fp32(bank.detach())
    with no_autocast(q):
        logits = adco_logits(q, keys, bank)
        p = torch.softmax(logits / temperature, dim=1)[:, keys.shape[0]:]
        sims = logits[:, keys.shape[0]:]
        return _bank_grad(F.normalize(q, dim=1), bank, p, sims, temperature)


@torch.no_grad()
def caco_positive_index(keys: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``π(i) = argmax_j <k̂_i, d_j>`` ([B] int64)."""
    _check(keys, bank)
    with no_autocast(keys):
        return (F.normalize(fp32(keys), dim=1) @ F.normalize(fp32(bank), dim=1).t()).argmax(1)


def caco_loss(q: torch.Tensor, bank: torch.Tensor, positive: torch.Tensor,
              temperature: float = 0.08) -> torch.Tensor:
    """``L_CaCo``: CE over the bank similarities with target ``positive`` (π, [B])."""
    _check(q, bank)
    with no_autocast(q):
        logits = F.normalize(fp32(q), dim=1) @ F.normalize(fp32(bank).detach(), dim=1).t()
        return F.cross_entropy(logits / temperature, positive)


@torch.no_grad()
def caco_memory_direction(q: torch.Tensor, bank: torch.Tensor, positive: torch.Tensor,
                          temperature: float = 0.08) -> torch.Tensor:
    """``U`` ([K, d]): descent on each query's positive entry, ascent on the others."""
    q, bank = fp32(q.detach()), fp32(bank.detach())
    _check(q, bank)
    with no_autocast(q):
        qn = F.normalize(q, dim=1)
        sims = qn @ F.normalize(bank, dim=1).t()
        c = torch.softmax(sims / temperature, dim=1)
        rows = torch.arange(q.shape[0], device=q.device)
        c[rows, positive] = 1.0 - c[rows, positive]
        return _bank_grad(qn, bank, c, sims, temperature)


@torch.no_grad()
def memory_sgd_step(bank: torch.Tensor, velocity: torch.Tensor, direction: torch.Tensor,
                    lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
    """In place: ``v <- m v - U + λ b``, ``b <- b - η v`` (U = the ascent direction)."""
    velocity.mul_(momentum).sub_(direction.to(velocity.dtype)).add_(bank, alpha=weight_decay)
    bank.sub_(velocity, alpha=lr)
