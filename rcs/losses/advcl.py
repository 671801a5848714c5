"""AdvCL (Fan et al., NeurIPS 2021) losses: multi-view SupCon and the pseudo-label CE term.

Multi-view SupCon as in AdvCL's ``SupConLoss`` with ``labels=None`` (PUBLISHED_METHODS.md A4.5). The
``V`` views of ``B`` images, each embedding L2-normalised, are stacked view-major into ``N = V B``
rows ``z``; with ``s_ik = <z_i, z_k> / T`` and ``P(i)`` the other ``V - 1`` views of i's image::

    l_i  = -(T / T_base) * (1 / |P(i)|) sum_{p in P(i)} [ s_ip - log sum_{k != i} exp(s_ik) ]
    L_CL = (1 / N) sum_i l_i                          (T = 0.5, T_base = 0.07: x 7.14)

The published code subtracts the (detached) row maximum before the exponentials; that shift
cancels exactly, so the masked logsumexp here has the same value and gradient. AdvCL's views
are ``[adv (pgd BN), t1, t2, high-frequency (normal BN)]``.

Pseudo-label cross-entropy over G cluster granularities (``ignore_index = -1``)::

    L_CE = (1 / G) sum_g CE_mean(logits_g, y_g)       (a granularity whose labels are all -1
                                                       in the batch contributes 0)
    L_AdvCL = L_CL + w_CE * L_CE                      (w_CE = 0.2)

All computed in fp32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast

__all__ = ["supcon_loss", "pseudo_label_ce", "advcl_loss"]


def _stack_views(views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``[B, V, d]`` from a tensor or a list of V ``[B, d]`` tensors."""
    if isinstance(views, torch.Tensor):
        if views.dim() != 3:
            raise ValueError(f"SupCon views must be [B, V, d], got {tuple(views.shape)}")
        return views
    return torch.stack(list(views), dim=1)


def supcon_loss(views: torch.Tensor | Sequence[torch.Tensor], temperature: float = 0.5,
                base_temperature: float = 0.07, normalize: bool = True) -> torch.Tensor:
    """Unsupervised multi-view SupCon of ``views`` ([B, V, d] or V x [B, d]); see module doc."""
    f = _stack_views(views)
    b, v, _ = f.shape
    if v < 2 or b < 1:
        raise ValueError(f"SupCon needs >= 2 views of >= 1 image, got B={b}, V={v}")
    with no_autocast(f):
        f = fp32(f)
        if normalize:
            f = F.normalize(f, p=2, dim=-1)
        z = f.transpose(0, 1).reshape(v * b, -1)  # view-major: row = view * B + image
        n = z.shape[0]
        s = (z @ z.t()) / temperature
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        log_den = torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
        img = torch.arange(n, device=z.device) % b
        pos = (img[:, None] == img[None, :]) & ~eye
        mean_log_prob = ((s - log_den) * pos).sum(1) / pos.sum(1)
        return -(temperature / base_temperature) * mean_log_prob.mean()


def pseudo_label_ce(logits: Sequence[torch.Tensor], labels: torch.Tensor,
                    ignore_index: int = -1) -> torch.Tensor:
    """``(1/G) sum_g CE_mean(logits[g], labels[g])`` with ``ignore_index`` (fp32)."""
    if len(logits) != labels.shape[0]:
        raise ValueError(f"{len(logits)} pseudo-label heads but labels for {labels.shape[0]}")
    with no_autocast(logits[0]):
        terms = []
        for lg, y in zip(logits, labels):
            y = y.long()
            valid = y != ignore_index
            if bool(valid.any()):
                terms.append(F.cross_entropy(fp32(lg), y, ignore_index=ignore_index))
            else:
                terms.append(fp32(lg).sum() * 0.0)
        return torch.stack(terms).mean()


def advcl_loss(views: torch.Tensor | Sequence[torch.Tensor], logits: Sequence[torch.Tensor],
               labels: torch.Tensor, temperature: float = 0.5, base_temperature: float = 0.07,
               ce_weight: float = 0.2) -> torch.Tensor:
    """``supcon_loss(views) + ce_weight * pseudo_label_ce(logits, labels)``."""
    out = supcon_loss(views, temperature, base_temperature)
    if ce_weight and len(logits):
        out = out + ce_weight * pseudo_label_ce(logits, labels)
    return out
