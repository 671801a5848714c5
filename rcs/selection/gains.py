"""Exact first-order gains of every candidate over the cached features (``selection.gains:
exact``).

The gain of candidate ``i`` for a validation gradient ``q`` is ``<∇φ ℓ_i(φ0), q>``, with the
per-sample gradients taken at the head ``φ0`` the selection started from (as the sketched
store holds them). :class:`ExactGains` recomputes it for all candidates from their cached
feature rows, chunk by chunk (a chunk's other samples are each sample's negatives, as in the
gradient pass), as one forward-mode product per sample (:func:`per_sample_gains`): no gradient
is formed, stored or sketched, so the gains equal the unsketched ones to float rounding. Each
search costs about two head forwards over every candidate's rows; the sketched store costs one
inner product per candidate but keeps only part of exact greedy's benefit (PUBLISHED_METHODS.md
D4.3).

With ``granularity='batch'`` a unit is one chunk and its gain the mean of its samples' gains
(the gain of the chunk's mean gradient).
"""

from __future__ import annotations

import numpy as np
import torch

from rcs.selection.per_sample import HeadFn, Objective, Params, per_sample_gains, unflatten


def feature_rows(store, lo: int, hi: int, views: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Cached feature rows ``lo:hi`` of a feature store as ``[hi - lo, views, D]``."""
    return torch.from_numpy(store.rows(np.arange(lo, hi))).to(device).view(hi - lo, views, -1)


class ExactGains:
    """``search(q, m, excluded) -> (ids, scores)``: top-``m`` units by exact gain (ties to the
    lower id), the same contract as :class:`rcs.selection.retrieval.Retriever`."""

    engine = "exact-jvp"

    def __init__(self, obj: Objective, head: HeadFn, feats, n: int, chunk: int,
                 labels: torch.Tensor | None = None, batch_units: bool = False,
                 params: Params | None = None, device: torch.device | str = "cpu"):
        self.obj, self.head, self.feats, self.n, self.chunk = obj, head, feats, n, chunk
        self.labels, self.batch_units, self.device = labels, batch_units, torch.device(device)
        self.params = head.state() if params is None else params  # φ0, fixed
        self.views = len(obj.views)

    def gains(self, q: np.ndarray | torch.Tensor) -> np.ndarray:
        """Exact gains of every unit (float64 numpy) for the flat direction ``q``."""
        q_t = torch.as_tensor(np.asarray(q, dtype=np.float32), device=self.device)
        direction = unflatten(self.head, q_t)
        out = []
        for lo in range(0, self.n, self.chunk):
            hi = min(self.n, lo + self.chunk)
            f = feature_rows(self.feats, lo, hi, self.views, self.device)
            y = None if self.labels is None else self.labels[lo:hi]
            with torch.no_grad():
                g = per_sample_gains(self.obj, self.head, f, direction, y, self.params)
            out.append(g.mean(0, keepdim=True) if self.batch_units else g)
        return torch.cat(out).double().cpu().numpy()

    def search(self, q: np.ndarray, m: int, excluded: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.gains(q)
        ids = np.flatnonzero(~np.asarray(excluded, dtype=bool))
        order = np.lexsort((ids, -scores[ids]))[:m]
        return ids[order].astype(np.int64), scores[ids[order]].astype(np.float32)
