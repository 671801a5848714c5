"""k-center greedy (farthest-point traversal) on encoder features (Sener & Savarese, ICLR 2018).

Objective: choose ``S``, ``|S| = k``, minimising the covering radius
``r(S) = max_i min_{j in S} ||x_i - x_j||``. Farthest-point greedy (Gonzalez 1985) starts from one
seeded random point and repeatedly adds the point farthest from the chosen set; its radius is at
most twice the optimum (``r_greedy <= 2 r*``), and no polynomial algorithm does better than 2
unless P = NP.

Features: the encoder's features of the clean, un-augmented candidates on the BN branch that is
exported and fine-tuned (``finetune.branch``, default ``'pgd'``: the representation SLF/ALF/AFF
see), L2-normalised by default so distances are the cosine geometry the contrastive loss
shapes. ``branch='normal'`` uses the clean-image BN statistics instead.

Known weakness (worth remembering when reading results): the farthest point is often an
outlier, so k-center spends budget on atypical images; at small fractions this can lose to
random selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcs.selection.base import Coreset, SelectionContext, register_selector
from rcs.selection.baseline_common import Timer, candidates, encoder_features, trace
from rcs.selection.gradient_pass import selection_stream
from rcs.selection.settings import SelectorSettings
from rcs.utils.optional import require
from rcs.utils.seed import generator


def kcenter_greedy(x: Tensor, k: int, first: int = 0, block: int = 1 << 16
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-point greedy on the rows of ``x`` [n, d] (any float dtype and device).

    Returns ``(order, radii)``: the ``k`` chosen row ids in pick order (``order[0] = first``) and
    ``radii[t]`` = the distance of pick ``t`` to the picks before it (``radii[0] = inf``), which
    is the covering radius of the first ``t`` picks. After each pick the min-distance of every
    row is updated exactly with its distance to the new centre,
    ``||x_i - c||^2 = ||x_i||^2 - 2 x_i.c + ||c||^2`` (blocks of ``block`` rows, no [n, d] temp).
    Ties go to the lowest row id. Cost: O(n·d) time per pick, O(n·k·d) in total, O(n) memory
    beyond ``x``; one matrix-vector product per pick (GPU-friendly).
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    sq = (x * x).sum(1)
    mind = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    order = np.empty(k, dtype=np.int64)
    radii = np.empty(k, dtype=np.float64)
    j, r = int(first), float("inf")
    for t in range(k):
        order[t], radii[t] = j, r
        c = x[j]
        for lo in range(0, n, block):
            d = (sq[lo:lo + block] - 2 * (x[lo:lo + block] @ c) + sq[j]).clamp_(min=0)
            torch.minimum(mind[lo:lo + block], d, out=mind[lo:lo + block])
        mind[j] = -1.0  # chosen: never picked again (even among exact duplicates)
        if t + 1 < k:
            v, i = torch.max(mind, 0)  # first maximum: the lowest id among ties
            j, r = int(i), float(v.clamp(min=0).sqrt())
    return order, radii


def covering_radius(x: np.ndarray, centers: np.ndarray) -> tuple[float, np.ndarray]:
    """``(max_i min_j ||x_i - x_centers[j]||, nearest centre position of every row)`` with a
    FAISS exact L2 index over the centres. Cost: O(n·k·d) (BLAS), O(n) memory."""
    faiss = require("faiss", "the k-center baseline")

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x[centers])
    dist, nearest = index.search(x, 1)
    return float(np.sqrt(max(0.0, float(dist.max())))), nearest[:, 0].astype(np.int64)


@register_selector("kcenter")
class KCenterSelector:
    """k-center greedy on encoder features (see the module docstring).

    Cost: one forward pass of the encoder over the candidates (no attack, no backward), then
    O(n·k·d) for the greedy (one matrix-vector product per pick), then a FAISS search of every
    candidate against the k centres for the covering radius (and optional weights).
    Memory: the [n, d] feature matrix. Settings (keywords; defaults from the run config, see
    :class:`rcs.selection.settings.SelectorSettings`): ``branch``, ``batch``; ``normalize`` (L2,
    default True);
    ``weights`` (default False: True stores cluster sizes as the coreset's weights).
    """

    name = "kcenter"

    def __init__(self, cfg: Any = None, *, normalize: bool = True, weights: bool = False,
                 **settings: Any):
        self.cfg, self.normalize, self.weights = cfg, bool(normalize), bool(weights)
        self.settings = SelectorSettings.resolve(cfg, selector=self.name, **settings)

    def select(self, ctx: SelectionContext) -> Coreset:
        s, timer = self.settings, Timer()
        cand, k = candidates(ctx)
        with timer("features"):
            x = encoder_features(ctx, cand, s)
            if self.normalize:
                x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
        first = int(generator(*selection_stream(ctx, s), 0xC3).integers(len(cand)))
        with timer("greedy"):
            order, radii = kcenter_greedy(x, k, first)
        with timer("assign"):
            feats = x.cpu().numpy()
            radius, nearest = covering_radius(feats, order)
        sizes = np.bincount(nearest, minlength=k)  # cluster size of each pick, in pick order
        chosen = cand[order]
        timings = timer.done(self.name, len(cand), k)
        meta = ctx.base_meta(self.name) | {
            "budget": k, "branch": s.branch, "normalize": self.normalize,
            "feature_dim": int(feats.shape[1]), "first": int(cand[first]),
            "covering_radius": radius, "radius_trace": trace(radii[1:]),
            "cluster_size_max": int(sizes.max()), "timings": timings}
        return Coreset(chosen, weights=sizes.astype(np.float32) if self.weights else None,
                       meta=meta)
