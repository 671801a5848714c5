"""Build a dataset from its config, and split off the RCS validation set."""

from __future__ import annotations

import numpy as np

from rcs.config.schema import DataConfig
from rcs.data.dataset import ImageDataset
from rcs.errors import ConfigError, DataError


def build_dataset(cfg: DataConfig, split: str | None = None) -> ImageDataset:
    """The ``split`` (default ``cfg.split``) of dataset ``cfg.name``, cut to ``cfg.limit`` images.

    ``cfg.limit > 0`` keeps the first ``limit`` images as a view (no copy). Use
    ``split="test"`` for evaluation.
    """
    from rcs.data.readers import READERS, check_reader

    check_reader(cfg.name)
    ds = READERS[cfg.name](cfg, split or cfg.split)
    if len(ds) == 0:
        raise DataError(f"dataset {cfg.name!r} (data.root={cfg.root!r}) has no images in split "
                        f"{split or cfg.split!r}; check data.root and data.split")
    if cfg.limit and cfg.limit < len(ds):
        ds = ds.subset(np.arange(cfg.limit))
    return ds


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted int64 ``(candidates, val)`` covering ``range(n)``.

    ``val`` holds ``round(val_fraction * n)`` indices drawn uniformly without replacement with
    ``numpy.random.default_rng(seed)``; ``val_fraction = 0`` gives an empty validation set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    if n < 0:
        raise ConfigError(f"n={n} must be >= 0")
    n_val = int(round(val_fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(perm[:n_val]).astype(np.int64)
    cand = np.sort(perm[n_val:]).astype(np.int64)
    return cand, val
