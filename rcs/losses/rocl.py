"""RoCL (Kim et al., NeurIPS 2020) multi-view NT-Xent, ``loss.py`` of the RoCL code
(PUBLISHED_METHODS.md A5.3, A5.5).

Views are stacked ``[v_1; v_2; ...; v_V]`` (N rows each). With ``z^ = z / (||z|| + 1e-8)`` and
the key side detached (gradients flow through the anchor rows only, as published)::

    S_ij = <z^_i, sg(z^_j)> / T                       (T = 0.5)
    E_ij = exp(S_ij) for j != i,  E_ii = 0
    l_ij = -log( E_ij / (sum_k E_ik + 1e-8) + 1e-8 )
    NTX_V = (1 / (V N)) sum_i sum_{j in P(i)} l_ij    (P(i): i's image in the other V - 1 views)

So with 3 views each anchor contributes two positive terms (a sum, not a mean). The 1e-8 terms
are the published ones (they move the value by ~1e-7); since |S_ij| <= 1/T the exponentials
cannot overflow at any usual temperature. RoCL's loss::

    L_RoCL = NTX_3([t1; t2; adv]) + (1 / lambda) NTX_2([adv; t2])      (lambda = 256)

Computed in fp32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["rocl_nt_xent", "rocl_loss"]


def rocl_nt_xent(views: Sequence[torch.Tensor], temperature: float = 0.5,
                 detach_keys: bool = True) -> torch.Tensor:
    """RoCL NT-Xent of V >= 2 views, each ``[N, d]`` (rows aligned by image); see module doc."""
    if len(views) < 2 or any(v.shape != views[0].shape for v in views):
        raise ValueError("RoCL NT-Xent needs >= 2 views of the same shape [N, d]")
    n, nv = views[0].shape[0], len(views)
    with no_autocast(views[0]):
        z = fp32(torch.cat(list(views), dim=0))
        z = z / (z.norm(p=2, dim=1, keepdim=True) + 1e-8)
        keys = z.detach() if detach_keys else z
        s = (z @ keys.t()) / temperature
        m = nv * n
        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        e = torch.exp(s).masked_fill(eye, 0.0)
        prob = e / (e.sum(dim=1, keepdim=True) + 1e-8)
        img = torch.arange(m, device=z.device) % n
        pos = (img[:, None] == img[None, :]) & ~eye
        return -(torch.log(prob + 1e-8) * pos).sum() / m


def rocl_loss(z_t1: torch.Tensor, z_t2: torch.Tensor, z_adv: torch.Tensor,
              temperature: float = 0.5, lam: float = 256.0,
              z_adv_reg: torch.Tensor | None = None, z_t2_reg: torch.Tensor | None = None
              ) -> torch.Tensor:
    """``NTX_3([t1; t2; adv]) + NTX_2([adv; t2]) / lam``. The regulariser may use other
    (e.g. local, not all-gathered) embeddings ``z_adv_reg`` / ``z_t2_reg``."""
    main = rocl_nt_xent([z_t1, z_t2, z_adv], temperature)
    za = z_adv if z_adv_reg is None else z_adv_reg
    zt = z_t2 if z_t2_reg is None else z_t2_reg
    return main + rocl_nt_xent([za, zt], temperature) / lam
