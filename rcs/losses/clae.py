"""CLAE (Ho & Vasconcelos, NeurIPS 2020): contrastive learning with adversarial examples.

Per image, two augmented views ``t1``, ``t2``; ``x_adv`` is an FGSM / PGD example of ``t1``
that maximises the NT-Xent of the pair ``(t1, x_adv)``. The loss adds the adversarial pair's
NT-Xent to the clean one (SimCLR's NT-Xent, :func:`rcs.losses.nt_xent`, both directions)::

    L = NTX([z(t1), z(t2)]) + alpha * NTX([z(t1), z(x_adv)])          (alpha = 1)

with the pairs interleaved (row 2k = image k's first member, row 2k+1 its second).
Computed in fp32 even under autocast.
"""

from __future__ import annotations

import torch

from rcs.losses.ntxent import nt_xent

__all__ = ["clae_loss", "pair_rows"]


def pair_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[B, d] x 2 -> [2B, d]`` with rows ``(a_0, b_0, a_1, b_1, ...)``."""
    if a.shape != b.shape:
        raise ValueError(f"paired embeddings need the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return torch.stack([a, b], dim=1).flatten(0, 1)


def clae_loss(z1: torch.Tensor, z2: torch.Tensor, z_adv: torch.Tensor,
              temperature: float = 0.5, alpha: float = 1.0) -> torch.Tensor:
    """``NTX(z1, z2) + alpha * NTX(z1, z_adv)``, each argument ``[B, d]`` aligned by image."""
    clean = nt_xent(pair_rows(z1, z2), temperature)
    if alpha == 0:
        return clean
    return clean + alpha * nt_xent(pair_rows(z1, z_adv), temperature)
