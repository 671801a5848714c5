"""Pseudo-labels by FAISS k-means on encoder features, at several granularities (AdvCL).

The published AdvCL code ships a fixed file of k-means cluster ids of ImageNet-pretrained
features (``pseudo_train_{2,10,50,100,500}``, PUBLISHED_METHODS.md A4.1); here they are computed:

1. features ``f(x)`` of every (un-augmented) training image, from the current model or from a
   given rcs checkpoint's encoder, on one BN branch, in eval mode without gradients;
2. rows L2-normalised (so k-means groups by cosine similarity);
3. for each cluster count k_g (default 2, 10, 50, 100, 500): FAISS k-means with ``niter``
   iterations on all N rows (no subsampling), seeded by ``seed + 7919 g``, then every row's
   nearest centroid is its label in ``0 .. k_g - 1``.

A count larger than the number of images N cannot be fitted; it is capped at N
(:func:`effective_counts`) and the trainer is told so (a warning). The same features and seed
give the same labels: FAISS k-means on the CPU is deterministic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.attacks import attack_mode
from rcs.utils.optional import require

__all__ = ["effective_counts", "kmeans_labels", "pseudo_labels", "encoder_features",
           "checkpoint_encoder", "PseudoHeads"]


def effective_counts(counts: Sequence[int], n: int, warn: bool = True) -> list[int]:
    """Cluster counts capped at the number of images ``n`` (warns when one is capped)."""
    out = [int(min(k, n)) for k in counts]
    if warn and out != [int(k) for k in counts]:
        warnings.warn(f"AdvCL pseudo-labels: cluster counts {list(counts)} capped at the dataset "
                      f"size {n}: {out}", stacklevel=2)
    return out


def kmeans_labels(features: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """FAISS k-means of ``features`` [N, d] into ``k`` clusters; int64 labels [N] in [0, k)."""
    faiss = require("faiss", "AdvCL's k-means pseudo-labels")

    x = np.ascontiguousarray(features, dtype=np.float32)
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    km = faiss.Kmeans(d, int(k), niter=int(niter), seed=int(seed), verbose=False,
                      min_points_per_centroid=1,
                      max_points_per_centroid=int(math.ceil(n / k)) + 1)  # use every row
    km.train(x)
    _, idx = km.index.search(x, 1)
    return idx[:, 0].astype(np.int64)


def pseudo_labels(features: np.ndarray, counts: Sequence[int], seed: int = 0,
                  niter: int = 20) -> np.ndarray:
    """Labels ``[G, N]`` (int64) of the L2-normalised ``features`` for each count in ``counts``."""
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.stack([kmeans_labels(x, k, seed + 7919 * g, niter) for g, k in enumerate(counts)])


@torch.no_grad()
def encoder_features(model: nn.Module, dataset: Any, branch: str, device: torch.device,
                     batch_size: int = 512) -> np.ndarray:
    """``model.features(x, branch)`` of every image of ``dataset`` (in order), eval mode.

    The model's train/eval flags and ``requires_grad`` are restored afterwards; no BN running
    statistic changes.
    """
    from rcs.data import to_float

    n = len(dataset)
    rows = []
    with attack_mode(model):
        for lo in range(0, n, batch_size):
            x, _ = dataset.get_batch(np.arange(lo, min(n, lo + batch_size)))
            f = model.features(to_float(x.to(device)), branch)
            rows.append(f.float().cpu())
    return torch.cat(rows).numpy()


def checkpoint_encoder(path: str, device: torch.device, branch: str) -> tuple[nn.Module, str]:
    """The encoder of an rcs pretraining checkpoint (strictly loaded) and the branch to use
    (``branch`` if that model has it, else its first one)."""
    from rcs.models.pretrained import load_pretrained, pretrained_model

    pre = load_pretrained(path)
    model = pretrained_model(pre, 2, device).eval()
    names = list(pre.cfg.model.bn_names)
    return model, (branch if branch in names else names[0])


class PseudoHeads(nn.Module):
    """One linear classifier per granularity on the encoder features (AdvCL's ``fc_g``)."""

    def __init__(self, feature_dim: int, counts: Sequence[int]):
        super().__init__()
        self.counts = [int(k) for k in counts]
        self.fcs = nn.ModuleList(nn.Linear(feature_dim, k) for k in self.counts)

    def forward(self, f: torch.Tensor) -> list[torch.Tensor]:
        return [fc(f) for fc in self.fcs]
