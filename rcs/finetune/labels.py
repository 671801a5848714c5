"""Label-fraction fine-tuning: a class-balanced, seeded subset of the labelled training split.

Used to fine-tune with 1 %, 10 % or 100 % of the labels (``finetune.label_fraction``), the
label-efficiency setting of self-supervised robust pretraining. With N labelled images in C
classes and fraction f::

    n    = max(1, round(f * N))                      images in the subset (exactly)
    q_c  = n // C  for every class, plus one for the first n mod C classes of a seeded order
           of the classes; a class with fewer images than its quota gives the rest to the
           others, evenly again (water-filling), so the counts differ by at most one between
           classes that are not exhausted
    S_c  = the first q_c images of a per-class permutation seeded by (seed, c)

With a fixed seed the subsets are nested (the 1 % subset lies inside the 10 % one). ``f = 1``
returns every index.
"""

from __future__ import annotations

import numpy as np

from rcs.errors import DataError
from rcs.utils.seed import generator

__all__ = ["class_quotas", "label_fraction_subset"]


def class_quotas(sizes: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Per-class counts summing to ``n``, as equal as the class ``sizes`` allow (see module)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if n > int(sizes.sum()):
        raise ValueError(f"cannot draw {n} images from {int(sizes.sum())}")
    order = generator(seed, 0xC1A55).permutation(len(sizes))
    quota = np.zeros(len(sizes), dtype=np.int64)
    left = n
    while left > 0:
        open_ = [c for c in order if quota[c] < sizes[c]]
        share = left // len(open_)
        if share == 0:  # fewer images left than open classes: one each, in the seeded order
            for c in open_[:left]:
                quota[c] += 1
            break
        for c in open_:
            take = min(share, int(sizes[c] - quota[c]))
            quota[c] += take
            left -= take
    return quota


def label_fraction_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a class-balanced ``fraction`` of ``labels`` (see module doc)."""
    labels = np.asarray(labels)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction {fraction} must be in (0, 1]")
    n_all = len(labels)
    if fraction >= 1.0:
        return np.arange(n_all, dtype=np.int64)
    if n_all == 0 or (labels < 0).any():
        raise DataError("label-fraction fine-tuning needs a labelled training split (every "
                        "image with a class label)")
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    n = max(1, int(round(fraction * n_all)))
    quota = class_quotas(np.array([len(m) for m in members]), n, seed)
    picks = [generator(seed, c).permutation(m)[:q]
             for c, m, q in zip(classes, members, quota)]
    return np.sort(np.concatenate(picks)).astype(np.int64)
