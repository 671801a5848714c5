"""MoCHi (Kalantidis et al., NeurIPS 2020): hard negatives mixed in embedding space.

With L2-normalised embeddings ``ẑ`` of interleaved pairs (positive of row i is row ``i ^ 1``),
cosines ``s_ik`` and the in-batch negatives ``N(i)`` (every row but i and i ^ 1), let
``H_i = (h_1, ..., h_N)`` be the N negatives most similar to ``ẑ_i`` (N capped at 2B - 2).
MoCHi adds s + s' synthetic negatives per anchor, drawn afresh every step::

    u_m  = normalize(α_m ẑ_{H_i[a_m]} + (1 - α_m) ẑ_{H_i[b_m]})     α_m ~ U(0, 1),   m ≤ s
    u'_m = normalize(β_m ẑ_i + (1 - β_m) ẑ_{H_i[c_m]})               β_m ~ U(0, 1/2), m ≤ s'

(a_m, b_m, c_m uniform positions in H_i; the synthetic points carry no gradient) and
contrasts against them too::

    l_i = -log( exp(s_{i,i^1}/t) / [ Σ_{k≠i} exp(s_ik/t) + Σ_m exp(<ẑ_i, u_m>/t)
                                       + Σ_m exp(<ẑ_i, u'_m>/t) ] )
    L_MoCHi = (1/2B) Σ_i l_i

Published (MoCo, queue of 16k-65k): N = 1024, s = 1024, s' = 256 (MoCHi(1024, 1024, 256)).
Here the negatives are those of the batch, so N is capped at 2B - 2. The random draw is an
argument (:func:`mochi_draw`) so the loss itself is a pure function. Computed in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import _check_pairs, fp32, no_autocast

__all__ = ["MochiDraw", "mochi_draw", "mochi_per_sample", "mochi_loss", "mochi_hard_count"]


@dataclass
class MochiDraw:
    """Positions in each anchor's hard list and mixing coefficients (one row per anchor)."""

    mix: torch.Tensor      # [n, s, 2] int64 positions (a_m, b_m)
    alpha: torch.Tensor    # [n, s] in [0, 1)
    query: torch.Tensor    # [n, s'] int64 positions c_m
    beta: torch.Tensor     # [n, s'] in [0, 1/2)


def mochi_hard_count(n_rows: int, n_hard: int) -> int:
    """N used for ``n_rows`` interleaved rows: ``min(n_hard, n_rows - 2)``."""
    return max(1, min(int(n_hard), n_rows - 2))


def mochi_draw(n_rows: int, n_hard: int, s: int, s_prime: int,
               generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> MochiDraw:
    """A fresh draw for ``n_rows`` anchors with ``n_hard`` hard negatives each."""
    def randint(*shape: int) -> torch.Tensor:
        return torch.randint(0, n_hard, shape, generator=generator, device=device)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device)

    return MochiDraw(mix=randint(n_rows, s, 2), alpha=rand(n_rows, s),
                     query=randint(n_rows, s_prime), beta=0.5 * rand(n_rows, s_prime))


def mochi_per_sample(z: torch.Tensor, draw: MochiDraw, temperature: float = 0.5,
                     n_hard: int = 1024) -> torch.Tensor:
    """Per-row ``l_i`` ([2B]) of the module docstring for interleaved pairs ``z`` [2B, d]."""
    _check_pairs(z)
    n = z.shape[0]
    if n < 4:
        raise ValueError("MoCHi needs at least two images (2B >= 4 rows) to have negatives")
    hard = mochi_hard_count(n, n_hard)
    for name, pos in (("mix", draw.mix), ("query", draw.query)):
        if pos.shape[0] != n or (pos.numel() and int(pos.max()) >= hard):
            raise ValueError(f"MoCHi draw '{name}' must have {n} rows of positions < {hard}; "
                             "draw it with mochi_draw(2B, mochi_hard_count(2B, N), ...)")
    with no_autocast(z):
        zn = F.normalize(fp32(z), dim=1)
        idx = torch.arange(n, device=z.device)
        s = zn @ zn.t()
        excluded = torch.zeros(n, n, dtype=torch.bool, device=z.device)
        excluded[idx, idx] = True
        excluded[idx, idx ^ 1] = True
        hard_idx = s.detach().masked_fill(excluded, float("-inf")).topk(hard, dim=1).indices
        keys = zn.detach()
        a = hard_idx.gather(1, draw.mix[..., 0])
        b = hard_idx.gather(1, draw.mix[..., 1])
        al = draw.alpha.to(zn.dtype)[..., None]
        u = F.normalize(al * keys[a] + (1 - al) * keys[b], dim=-1)             # [n, s, d]
        c = hard_idx.gather(1, draw.query)
        be = draw.beta.to(zn.dtype)[..., None]
        u2 = F.normalize(be * keys[:, None, :] + (1 - be) * keys[c], dim=-1)  # [n, s', d]
        logits = (s / temperature).masked_fill(torch.eye(n, dtype=torch.bool,
                                                         device=z.device), float("-inf"))
        syn = torch.einsum("nd,nmd->nm", zn, torch.cat([u, u2], dim=1)) / temperature
        pos = logits[idx, idx ^ 1]
        return torch.logsumexp(torch.cat([logits, syn], dim=1), dim=1) - pos


def mochi_loss(z: torch.Tensor, draw: MochiDraw, temperature: float = 0.5,
               n_hard: int = 1024) -> torch.Tensor:
    """Scalar MoCHi loss ``(1/2B) Σ_i l_i``."""
    return mochi_per_sample(z, draw, temperature, n_hard).mean()
