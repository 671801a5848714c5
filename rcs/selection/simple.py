"""The two selectors every schedule can fall back on: full data and (class-balanced) random."""

from __future__ import annotations

import time

import numpy as np

from rcs.selection.base import (
    Coreset,
    SelectionContext,
    class_quotas,
    register_selector,
)
from rcs.utils.seed import generator


@register_selector("full")
class FullSelector:
    """Keeps every candidate (fraction is ignored). Cost: O(n)."""

    name = "full"

    def __init__(self, cfg=None):
        self.cfg = cfg

    def select(self, ctx: SelectionContext) -> Coreset:
        meta = ctx.base_meta(self.name) | {"fraction": 1.0, "timings": {"total": 0.0}}
        return Coreset(ctx.selectable()[0], meta=meta)


@register_selector("random")
class RandomSelector:
    """Uniform random subset of exactly ``budget`` candidates, seeded by (seed, epoch).

    With ``class_balanced`` and labels, each class contributes its proportional share
    (largest-remainder rounding, so the total is exact). Cost: O(n).
    """

    name = "random"

    def __init__(self, cfg=None, class_balanced: bool | None = None):
        if class_balanced is None:
            class_balanced = bool(cfg.selection.class_balanced) if cfg is not None else False
        self.class_balanced = class_balanced

    def select(self, ctx: SelectionContext) -> Coreset:
        t0 = time.perf_counter()
        rng = generator(ctx.seed, ctx.epoch, 0x5E1EC7)
        cand, k = ctx.selectable()
        labels = getattr(ctx.dataset, "labels", None)
        if self.class_balanced and labels is not None:
            y = np.asarray(labels)[cand]
            classes, take = class_quotas(y, k)
            chosen = np.concatenate([rng.choice(cand[y == c], size=t, replace=False)
                                     for c, t in zip(classes, take)])
        else:
            chosen = rng.choice(cand, size=k, replace=False)
        meta = ctx.base_meta(self.name) | {"class_balanced": self.class_balanced,
                                           "timings": {"total": time.perf_counter() - t0}}
        return Coreset(chosen, meta=meta)
