"""What the baseline selectors share beyond the settings (:mod:`rcs.selection.settings`) and
the gradient pass (:mod:`rcs.selection.gradient_pass`): the candidate set,
encoder features of un-augmented images, phase timers and metadata traces.

Every baseline selects from ``candidates \\ val`` (never a validation index), returns exactly
``min(ctx.budget, |candidates \\ val|)`` indices, and never modifies ``ctx.model`` (all model work
runs inside :func:`rcs.selection.api.frozen`, which restores train/eval flags, ``requires_grad``
and BN routing). Randomness comes from generators seeded by
:func:`rcs.selection.gradient_pass.selection_stream` ``(ctx.seed, selection.seed,
ctx.epoch)``, so the same inputs give the same coreset.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcs.errors import ConfigError, CoresetError
from rcs.selection.api import frozen
from rcs.selection.base import SelectionContext
from rcs.selection.settings import SelectorSettings
from rcs.utils.device import autocast, unwrap

log = logging.getLogger("rcs.baselines")


def candidates(ctx: SelectionContext) -> tuple[np.ndarray, int]:
    """Sorted candidate ids without any validation id, and the number to select."""
    cand, k = ctx.selectable()
    if len(cand) == 0:
        raise CoresetError("no candidates left to select from (all are validation images)")
    return cand, k


class Timer:
    """``with timer('phase'):`` accumulates wall seconds per phase into ``timer.seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t

    def done(self, name: str, n: int, k: int) -> dict[str, float]:
        self.seconds["total"] = time.perf_counter() - self._t0
        log.info("%s: %d of %d candidates in %.2fs (%s)", name, k, n, self.seconds["total"],
                 ", ".join(f"{p} {v:.2f}s" for p, v in self.seconds.items() if p != "total"))
        return dict(self.seconds)


def trace(values: Any, cap: int = 1024) -> list[float]:
    """At most ``cap`` evenly spaced entries of a per-pick sequence (for JSON metadata)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) > cap:
        v = v[np.linspace(0, len(v) - 1, cap).round().astype(np.int64)]
    return [float(x) for x in v]


def encoder_features(ctx: SelectionContext, ids: np.ndarray, s: SelectorSettings) -> Tensor:
    """Encoder features ``[n, D]`` (float32, on ``ctx.device``) of the *un-augmented* images
    ``ids`` on BN branch ``s.branch``, in eval mode without gradients. Cost: one forward pass
    per image, no attack."""
    from rcs.data import to_float

    if ctx.model is None:
        raise ConfigError("this selector needs the model being trained (ctx.model)")
    model = unwrap(ctx.model)
    names = tuple(getattr(model, "bn_names", (s.branch,)))
    if s.branch not in names:
        raise ConfigError(f"BN branch {s.branch!r} is not one of the model's {list(names)}")
    dev = torch.device(ctx.device)
    out = []
    with frozen([model]), torch.no_grad(), autocast(dev, s.amp):
        for lo in range(0, len(ids), s.batch):
            x, _ = ctx.dataset.get_batch(ids[lo:lo + s.batch])
            out.append(model.features(to_float(x.to(dev)), s.branch).float())
    return torch.cat(out) if out else torch.empty(0, model.feature_dim, device=dev)
