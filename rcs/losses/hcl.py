"""HCL (Robinson et al., ICLR 2021): hard-negative sampling with debiasing.

On a logit matrix ``S_ij = s_ij / t`` (cosine similarity over temperature), for anchor i with
positives ``P(i)`` and negatives ``N(i)`` (every other row that is neither i nor a positive,
``M = |N(i)|``)::

    pos_i = (1/|P(i)|) Σ_{j∈P(i)} exp(S_ij)
    w_ik  = exp(β S_ik) / ((1/M) Σ_{m∈N(i)} exp(β S_im))          (importance weights, mean 1)
    Ng_i  = max( (Σ_{k∈N(i)} w_ik exp(S_ik) - τ⁺ M pos_i) / (1 - τ⁺),  M e^{-1/t} )
    l_ij  = -log( exp(S_ij) / (pos_i + Ng_i) )                      (j ∈ P(i))

β concentrates the negatives' weight on the hard (similar) ones; τ⁺ removes the expected mass
of false negatives (same-class images among the negatives, Chuang et al. 2020); the clamp keeps
the estimate above its theoretical minimum. β = 0, τ⁺ = 0 give NT-Xent.

HCL's loss on interleaved pairs (positive of row i is row ``i ^ 1``, as in SimCLR)::

    L_HCL = (1/2B) Σ_i l_{i, i^1}            (β = 1, τ⁺ = 0.1 in the public STL-10 script)

:func:`hard_negative_terms` is the general form; A-InfoNCE (``rcs.losses.ainfonce``) uses it
with several positives per anchor. Computed in fp32 even under autocast.
"""

from __future__ import annotations

import math

import torch

from rcs.losses.ntxent import _check_pairs, cosine_similarity_matrix, fp32, no_autocast

__all__ = ["hard_negative_terms", "hcl_per_sample", "hcl_loss"]


def hard_negative_terms(logits: torch.Tensor, pos_mask: torch.Tensor, temperature: float,
                        tau_plus: float = 0.1, beta: float = 1.0) -> torch.Tensor:
    """``l_ij`` ([n, n]; 0 where ``pos_mask`` is False) of the module docstring.

    ``logits`` are ``S = s / t`` ([n, n], the diagonal is ignored); ``pos_mask`` marks each
    anchor's positives (bool, no diagonal entries).
    """
    n = logits.shape[0]
    if logits.shape != (n, n) or pos_mask.shape != (n, n):
        raise ValueError(f"hard-negative terms need square [n, n] logits and mask, got "
                         f"{tuple(logits.shape)} and {tuple(pos_mask.shape)}")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    if bool((pos_mask & eye).any()):
        raise ValueError("pos_mask must not mark an anchor as its own positive")
    neg_mask = ~(pos_mask | eye)
    m = neg_mask.sum(dim=1).to(logits.dtype)
    if bool((m == 0).any()) or bool((pos_mask.sum(dim=1) == 0).any()):
        raise ValueError("every anchor needs at least one positive and one negative")
    e = torch.exp(logits)
    pos = (e * pos_mask).sum(dim=1) / pos_mask.sum(dim=1)
    imp = torch.exp(beta * logits).masked_fill(~neg_mask, 0.0)
    reweighted = (imp * e).sum(dim=1) / (imp.sum(dim=1) / m)
    ng = (reweighted - tau_plus * m * pos) / (1.0 - tau_plus)
    ng = torch.maximum(ng, m * math.exp(-1.0 / temperature))
    terms = torch.log(pos + ng)[:, None] - logits
    return terms.masked_fill(~pos_mask, 0.0)


def hcl_per_sample(z: torch.Tensor, temperature: float = 0.5, tau_plus: float = 0.1,
                   beta: float = 1.0) -> torch.Tensor:
    """``l_{i, i^1}`` ([2B]) of interleaved pairs ``z`` [2B, d] (fp32 or fp64)."""
    _check_pairs(z)
    if z.shape[0] < 4:
        raise ValueError("HCL needs at least two images (2B >= 4 rows) to have negatives")
    with no_autocast(z):
        z = fp32(z)
        n = z.shape[0]
        idx = torch.arange(n, device=z.device)
        pos_mask = torch.zeros(n, n, dtype=torch.bool, device=z.device)
        pos_mask[idx, idx ^ 1] = True
        terms = hard_negative_terms(cosine_similarity_matrix(z) / temperature, pos_mask,
                                    temperature, tau_plus, beta)
        return terms[idx, idx ^ 1]


def hcl_loss(z: torch.Tensor, temperature: float = 0.5, tau_plus: float = 0.1,
             beta: float = 1.0) -> torch.Tensor:
    """Scalar HCL loss ``(1/2B) Σ_i l_{i, i^1}`` of interleaved pairs ``z`` [2B, d]."""
    return hcl_per_sample(z, temperature, tau_plus, beta).mean()
