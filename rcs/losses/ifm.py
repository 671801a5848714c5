"""IFM (Robinson et al., NeurIPS 2021): implicit feature modification.

IFM perturbs the *similarities* of the contrastive loss, not the images: with cosine
similarities ``s_ij`` of interleaved pairs (positive of row i is row ``i ^ 1``), the
ε-perturbed NT-Xent lowers the positive's similarity and raises every negative's by ε::

    l^ε_i = -log( exp((s_{i,i^1} - ε)/t) / [ exp((s_{i,i^1} - ε)/t) + Σ_{k ∉ {i, i^1}}
                                               exp((s_ik + ε)/t) ] )
    NTX_ε(z) = (1/2B) Σ_i l^ε_i                       (NTX_0 = NT-Xent)

which is the closed form of the worst case over feature perturbations of size ε. The training
loss mixes both::

    L_IFM = (NTX(z) + α NTX_ε(z)) / (1 + α)                     (α = 1, ε = 0.1)

(the published code mixes MoCo's loss the same way). Computed in fp32 even under autocast.
"""

from __future__ import annotations

import torch

from rcs.losses.ntxent import (
    _check_pairs,
    cosine_similarity_matrix,
    fp32,
    no_autocast,
    nt_xent_per_sample,
)

__all__ = ["ifm_nt_xent_per_sample", "ifm_loss"]


def ifm_nt_xent_per_sample(z: torch.Tensor, temperature: float = 0.5,
                           epsilon: float = 0.1) -> torch.Tensor:
    """Per-row ``l^ε_i`` ([2B]) of interleaved pairs ``z`` [2B, d]; see the module docstring."""
    _check_pairs(z)
    with no_autocast(z):
        z = fp32(z)
        n = z.shape[0]
        pos_idx = torch.arange(n, device=z.device) ^ 1
        s = cosine_similarity_matrix(z)
        shift = torch.full_like(s, epsilon)
        shift[torch.arange(n, device=z.device), pos_idx] = -epsilon
        logits = (s + shift) / temperature
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        pos = logits.gather(1, pos_idx[:, None]).squeeze(1)
        return torch.logsumexp(logits, dim=1) - pos


def ifm_loss(z: torch.Tensor, temperature: float = 0.5, epsilon: float = 0.1,
             alpha: float = 1.0) -> torch.Tensor:
    """``(NTX(z) + α NTX_ε(z)) / (1 + α)`` (fp32) of interleaved pairs ``z`` [2B, d]."""
    clean = nt_xent_per_sample(z, temperature).mean()
    if alpha == 0:
        return clean
    adv = ifm_nt_xent_per_sample(z, temperature, epsilon).mean()
    return (clean + alpha * adv) / (1.0 + alpha)
