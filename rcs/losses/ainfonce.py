"""A-InfoNCE (Yu et al., ECCV 2022, "Adversarial Contrastive Learning via Asymmetric InfoNCE")
on RoCL's three views.

Views are stacked ``[t1; t2; adv]`` (N rows each, aligned by image). As in RoCL's NT-Xent
(``rcs.losses.rocl``), ``z^ = z / (||z|| + 1e-8)``, ``S_ij = <z^_i, sg(z^_j)> / T`` (gradients
through the anchor rows only) and ``P(i)`` = the same image in the two other views. Per positive
pair, the term is RoCL's

    l_ij = -log( E_ij / (Σ_k E_ik + 1e-8) + 1e-8 )          E_ij = exp(S_ij), E_ii = 0

or, with hard negatives (``hn``), the debiased hard-negative term of ``rcs.losses.hcl``
(``pos_i`` = mean of ``exp(S_ij)`` over the two positives, importance weights ``exp(β S)``,
class prior ``τ⁺``). The loss weights the six view pairs::

    L = (1/3N) Σ_i Σ_{j∈P(i)} w_ij l_ij
    w = 1                for clean <-> clean pairs (t1 -> t2, t2 -> t1), and for every pair
                         without ``ip``;
    w = λ_a γ            for clean anchor -> adversarial positive (t1 -> adv, t2 -> adv),
    w = λ_a (1 - γ)      for adversarial anchor -> clean positive (adv -> t1, adv -> t2)

``ip`` (inferior positives): with γ = 0.2 the clean views are pulled only weakly toward the
adversarial view (whose identity the attack may have confused), while the adversarial view is
pulled strongly toward the clean ones. Published (RoCL-IPHN, CIFAR-10): γ = 0.2, λ_a = 1,
τ⁺ = 0.12, β = 1. ``ip`` alone with γ = 1/2 and λ_a = 2 equals RoCL's NTX_3.

The published code averages the importance weights over all 3N columns (the masked ones count
as zeros); we average over the negatives, as HCL defines it (a factor 3N / (3N - 3) on the
reweighted sum). Computed in fp32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rcs.losses.hcl import hard_negative_terms
from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["AINFONCE_VARIANTS", "ainfonce_rocl_loss", "ainfonce_pair_weights"]

AINFONCE_VARIANTS = ("ip", "hn", "iphn")


def ainfonce_pair_weights(variant: str, ip_degree: float = 0.2,
                          adv_weight: float = 1.0) -> torch.Tensor:
    """``[3, 3]`` weights ``w[anchor view, positive view]`` for views (t1, t2, adv)."""
    if variant not in AINFONCE_VARIANTS:
        raise ValueError(f"A-InfoNCE variant {variant!r} is not one of {AINFONCE_VARIANTS}")
    w = torch.ones(3, 3, dtype=torch.float64)
    if "ip" in variant:
        w[0, 2] = w[1, 2] = adv_weight * ip_degree
        w[2, 0] = w[2, 1] = adv_weight * (1.0 - ip_degree)
    w.fill_diagonal_(0.0)
    return w


def ainfonce_rocl_loss(views: Sequence[torch.Tensor], temperature: float = 0.5,
                       variant: str = "iphn", ip_degree: float = 0.2, adv_weight: float = 1.0,
                       tau_plus: float = 0.12, beta: float = 1.0) -> torch.Tensor:
    """A-InfoNCE of ``views = [z_t1, z_t2, z_adv]`` (each ``[N, d]``); see the module doc."""
    if len(views) != 3 or any(v.shape != views[0].shape for v in views):
        raise ValueError("A-InfoNCE on RoCL needs three views [t1, t2, adv] of the same shape")
    n = views[0].shape[0]
    w_views = ainfonce_pair_weights(variant, ip_degree, adv_weight)
    with no_autocast(views[0]):
        z = fp32(torch.cat(list(views), dim=0))
        z = z / (z.norm(p=2, dim=1, keepdim=True) + 1e-8)
        s = (z @ z.detach().t()) / temperature
        m = 3 * n
        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        img = torch.arange(m, device=z.device) % n
        pos = (img[:, None] == img[None, :]) & ~eye
        if "hn" in variant:
            terms = hard_negative_terms(s, pos, temperature, tau_plus, beta)
        else:
            e = torch.exp(s).masked_fill(eye, 0.0)
            terms = -torch.log(e / (e.sum(dim=1, keepdim=True) + 1e-8) + 1e-8)
        view = torch.arange(m, device=z.device) // n
        w = w_views.to(device=z.device, dtype=z.dtype)[view[:, None], view[None, :]]
        return (terms * w * pos).sum() / m
