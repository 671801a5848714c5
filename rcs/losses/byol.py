"""BYOL (Grill et al., NeurIPS 2020) regression loss, as used by BYORL (Gowal et al., ICLR 2021).

Rows are interleaved view pairs ``[x0_a, x0_b, x1_a, x1_b, ...]`` (2B rows). ``p`` are the online
predictions ``q(g(f(x)))``, ``z`` the target projections ``g'(f'(x))`` (no gradient). Each view's
prediction regresses the target projection of the *other* view of its image (row ``i ^ 1``)::

    l_i  = || p_i / ||p_i|| - sg(z_{i^1}) / ||z_{i^1}|| ||^2 = 2 - 2 cos(p_i, z_{i^1})
    L    = (1 / B) sum_{i=1}^{2B} l_i                 (the symmetrised BYOL loss: the sum of
                                                       both directions' batch means)

BYORL feeds the online network PGD examples that maximise L (the target sees clean views).
Computed in fp32 even under autocast; norms are clamped at 1e-12 (``F.normalize``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["byol_loss", "byol_loss_per_sample"]


def byol_loss_per_sample(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``l_i = 2 - 2 cos(p_i, sg(z_{i^1}))`` for interleaved rows ([2B])."""
    if p.shape != z.shape or p.dim() != 2 or p.shape[0] % 2:
        raise ValueError(f"BYOL needs p, z of the same [2B, d] shape, got {tuple(p.shape)}, "
                         f"{tuple(z.shape)}")
    with no_autocast(p):
        pn = F.normalize(fp32(p), dim=1)
        zn = F.normalize(fp32(z).detach(), dim=1)
        swap = torch.arange(p.shape[0], device=p.device) ^ 1
        return 2.0 - 2.0 * (pn * zn[swap]).sum(dim=1)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Symmetrised BYOL loss ``(1/B) sum_i l_i`` over the 2B interleaved rows."""
    return byol_loss_per_sample(p, z).sum() / (p.shape[0] // 2)
