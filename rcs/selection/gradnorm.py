"""Gradient-norm scoring (GraNd / EL2N style, Paul et al., NeurIPS 2021) on the ACL loss.

GraNd scores a sample by the expected norm of its loss gradient, EL2N by the norm of its error
vector; both keep the highest-scoring ("hardest") samples. Contrastive pretraining has no labels,
so the score here is the norm of the per-sample gradient of the pretraining loss itself (ACL:
``½[NT-Xent(nat) + NT-Xent(adv)]`` restricted to the sample's own terms, AIR/SAT likewise) w.r.t.
the projection head's Linear layers -- the same per-sample gradients RCS computes
(:mod:`rcs.selection.per_sample`), but exact (no sketch, only the norm is kept):

    score(x) = (1/r) Σ_{t=1..r} || ∇_φ ℓ(x; views_t, attack_t) ||_2

with ``r = repeats`` independent draws of the two augmented views and the attack's random start
(GraNd averages over network initialisations; the model here is given, so the expectation is
over the randomness of the views). The ``budget`` candidates with the largest scores are kept;
ties go to the lower dataset index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rcs.errors import ConfigError
from rcs.selection.base import Coreset, SelectionContext, register_selector
from rcs.selection.baseline_common import Timer, candidates, trace
from rcs.selection.gradient_pass import head_gradients
from rcs.selection.settings import SelectorSettings


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` ids with the largest scores (ties: lower id first)."""
    order = np.lexsort((ids, -np.asarray(scores, dtype=np.float64)))
    return ids[order[:k]]


@register_selector("gradnorm")
class GradNormSelector:
    """Keep the candidates whose per-sample head gradient of the pretraining loss is largest.

    Cost per repeat: RCS's gradient phase without the sketch -- for every candidate two views,
    a PGD attack of ``attack_steps`` steps (``selection.train_attack_steps``), feature forwards
    and ``vmap`` per-sample head gradients, of which only the norm is kept -- then an
    O(n log n) sort. Memory: O(grad_chunk x P_head) for the gradients, O(n) for the scores.
    ``last_scores`` holds ``(candidate ids, scores)`` of the last call (for inspection).
    """

    name = "gradnorm"

    def __init__(self, cfg: Any = None, *, repeats: int = 1, **settings: Any):
        if repeats < 1:
            raise ConfigError(f"gradnorm repeats={repeats} must be >= 1")
        self.cfg, self.repeats = cfg, int(repeats)
        self.settings = SelectorSettings.resolve(cfg, selector=self.name, **settings)
        self.last_scores: tuple[np.ndarray, np.ndarray] | None = None

    def select(self, ctx: SelectionContext) -> Coreset:
        s, timer = self.settings, Timer()
        cand, k = candidates(ctx)
        scores = np.zeros(len(cand), dtype=np.float64)
        with timer("gradients"):
            for r in range(self.repeats):
                for pos, norms in head_gradients(ctx, s, lambda g: g.norm(dim=1), repeat=r,
                                                 desc="gradnorm"):
                    scores[pos] += norms.double().cpu().numpy() / self.repeats
        with timer("rank"):
            chosen = top_k(scores, cand, k)
        self.last_scores = (cand, scores)
        kept = np.isin(cand, chosen)
        timings = timer.done(self.name, len(cand), k)
        meta = ctx.base_meta(self.name) | {
            "budget": k, "repeats": self.repeats, "attack_steps": s.attack_steps,
            "objective": s.objective_kind,
            "score_all": _stats(scores), "score_kept": _stats(scores[kept]),
            "score_quantiles": trace(np.quantile(scores, np.linspace(0, 1, 11))),
            "timings": timings}
        return Coreset(chosen, meta=meta)


def _stats(v: np.ndarray) -> dict[str, float]:
    return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
