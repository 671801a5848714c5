"""CRAIG-style coreset (Mirzasoleiman et al., ICML 2020) on sketched per-sample ACL gradients.

CRAIG picks the subset ``S`` whose weighted gradients best approximate the full gradient, via the
upper bound ``min_S Σ_i min_{j in S} ||g_i - g_j||`` -- a facility-location problem -- and gives
each pick the weight ``γ_j = |{i : j is i's nearest pick}|`` (its cluster size).

Here ``g_i`` is the per-sample gradient of the pretraining loss (ACL by default) w.r.t. the
projection head, exactly RCS's (:mod:`rcs.selection.per_sample`), sketched to
``selection.sketch_dim`` dims with the same seeded :class:`rcs.selection.sketch.Sketch` (distances
preserved up to JL error). The similarity is sparse: each gradient keeps its ``knn`` nearest
gradients (FAISS), ``s_ij = C - ||g_i - g_j||`` there and 0 elsewhere, and facility location is
maximised with lazy greedy (:mod:`rcs.selection.facility`). No n x n matrix is ever formed.

Differences from the published CRAIG: it is computed on the whole candidate set (no per-class
split: contrastive pretraining has no labels), on head gradients of a contrastive loss, and the
rcs trainer -- like RCS -- trains on the chosen indices without using the weights (they are
stored in the coreset file for code that does use them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rcs.errors import ConfigError
from rcs.selection.base import Coreset, SelectionContext, register_selector
from rcs.selection.baseline_common import Timer, candidates, trace
from rcs.selection.facility import knn_similarity, lazy_greedy
from rcs.selection.gradient_pass import head_gradients, make_sketch, objective_and_net
from rcs.selection.kcenter import covering_radius
from rcs.selection.per_sample import linear_param_names
from rcs.selection.settings import SelectorSettings


def default_knn(n: int, k: int) -> int:
    """Neighbours per element: at least 16, and 2x the mean cluster size n / k, so that most
    elements have a chosen element among their neighbours."""
    return int(min(n, max(16, 2 * math.ceil(n / max(1, k)))))


@register_selector("craig")
class CraigSelector:
    """Facility location on kNN-sparse sketched gradient distances, lazy greedy, CRAIG weights.

    Cost: RCS's gradient phase (per candidate: two views, a ``attack_steps``-step PGD, feature
    forwards, ``vmap`` head gradients, a sketch to ``d = sketch_dim``); the kNN graph
    (``index='flat'``: exact, O(n²·d); ``'ivfpq'``: IVF, about O(n^1.5·d)); lazy greedy
    (O(n·knn) for the bounds + O(knn + log n) per re-evaluation); the weights: a FAISS search of
    every gradient against the k picks, O(n·k·d). Memory: O(n·d) float32 gradients +
    O(n·knn) for the graph. Settings: ``knn`` (default :func:`default_knn`), ``weights``
    (default True: store the cluster sizes), and :class:`rcs.selection.settings.SelectorSettings`.
    """

    name = "craig"

    def __init__(self, cfg: Any = None, *, knn: int | None = None, weights: bool = True,
                 **settings: Any):
        if knn is not None and knn < 1:
            raise ConfigError(f"craig knn={knn} must be >= 1")
        self.cfg, self.knn, self.weights = cfg, knn, bool(weights)
        self.settings = SelectorSettings.resolve(cfg, selector=self.name, **settings)

    def select(self, ctx: SelectionContext) -> Coreset:
        s, timer = self.settings, Timer()
        cand, k = candidates(ctx)
        with timer("gradients"):
            _, net = objective_and_net(ctx.model, s)
            params = dict(net.head.named_parameters())
            in_dim = sum(params[n].numel()
                         for n in linear_param_names(net.head, s.selection.scope))
            sketch = make_sketch(ctx, s, in_dim)
            grads = np.zeros((len(cand), sketch.dim), dtype=np.float32)
            for pos, g in head_gradients(ctx, s, sketch, desc="craig"):
                grads[pos] = g.cpu().numpy()
        knn = self.knn or default_knn(len(cand), k)
        with timer("knn"):
            sim, info = knn_similarity(grads, knn, s.selection.index, seed=int(ctx.seed))
        with timer("greedy"):
            res = lazy_greedy(sim, k)
        with timer("weights"):
            radius, nearest = covering_radius(grads, res.order)
            sizes = np.bincount(nearest, minlength=k)
        chosen = cand[res.order]
        timings = timer.done(self.name, len(cand), k)
        meta = ctx.base_meta(self.name) | {
            "budget": k, "knn": info["knn"], "knn_engine": info["engine"], "C": info["C"],
            "nnz": sim.nnz, "fl_value": res.value, "fl_value_max": float(sim.n * info["C"]),
            "gain_evaluations": res.evaluations, "naive_evaluations": int(k * len(cand)),
            "uncovered": int((res.cover <= 0).sum()), "max_gradient_distance": radius,
            "cluster_size_max": int(sizes.max()), "attack_steps": s.attack_steps,
            "sketch": {"kind": sketch.kind, "dim": sketch.dim, "in_dim": in_dim},
            "timings": timings}
        return Coreset(chosen, weights=sizes.astype(np.float32) if self.weights else None,
                       gains=trace(res.gains), meta=meta)
