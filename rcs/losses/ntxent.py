"""NT-Xent (SimCLR / ACL contrastive loss) with a masked diagonal, always computed in fp32.

Rows of ``z`` are interleaved pairs ``[x0_a, x0_b, x1_a, x1_b, ...]``; the positive of row i is
row ``i ^ 1``. With cosine similarities ``s_ij = <z_i, z_j> / max(||z_i|| ||z_j||, 1e-8)``::

    l_i = -log( exp(s_{i,i^1}/t) / sum_{k != i} exp(s_ik/t) )
    NTX(z) = (1/2B) sum_i l_i

The self term ``k = i`` is removed by masking (-inf before the logsumexp), not by subtracting
``e^{1/t}`` as the ACL code does: both agree when ``cos(z_i, z_i) = 1`` exactly, but masking is
also right for zero rows and in low precision (PUBLISHED_METHODS.md A0.3, A7.2).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["nt_xent", "nt_xent_per_sample", "fp32", "no_autocast", "cosine_similarity_matrix"]


def fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, or unchanged when it is already float64 (tests run in double)."""
    return x if x.dtype == torch.float64 else x.float()


def no_autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Context that switches autocast off on ``x``'s device so matmuls/softmaxes stay fp32."""
    dev = x.device.type
    try:
        return torch.autocast(device_type=dev, enabled=False)
    except RuntimeError:  # device type without autocast support
        return contextlib.nullcontext()


def cosine_similarity_matrix(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``S_ij = <z_i, z_j> / max(||z_i|| ||z_j||, eps)`` (the ACL ``pair_cosine_similarity``)."""
    n = z.norm(p=2, dim=1, keepdim=True)
    return (z @ z.t()) / (n * n.t()).clamp(min=eps)


def _check_pairs(z: torch.Tensor) -> None:
    if z.dim() != 2 or z.shape[0] < 2 or z.shape[0] % 2:
        raise ValueError(f"NT-Xent needs a [2B, d] tensor of interleaved pairs with B >= 1, got "
                         f"shape {tuple(z.shape)}")


def nt_xent_per_sample(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Per-row NT-Xent terms ``l_i`` ([2B], fp32 or fp64); see the module docstring."""
    _check_pairs(z)
    with no_autocast(z):
        z = fp32(z)
        n = z.shape[0]
        logits = cosine_similarity_matrix(z) / temperature
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        pos_idx = torch.arange(n, device=z.device) ^ 1
        pos = logits.gather(1, pos_idx[:, None]).squeeze(1)
        return torch.logsumexp(logits, dim=1) - pos


def nt_xent(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Scalar NT-Xent ``(1/2B) sum_i l_i`` of interleaved pairs ``z`` [2B, d], in fp32."""
    return nt_xent_per_sample(z, temperature).mean()
