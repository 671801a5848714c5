"""Learning-rate schedule measured in samples seen: linear warm-up, then cosine to ``min_lr``.

With T = ``total_samples``, W = ``warmup_samples`` and s = samples seen so far::

    lr(s) = base_lr * s / W                                            for s < W
    lr(s) = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * (s - W) / (T - W)))   for W <= s < T
    lr(s) = min_lr                                                     for s >= T

ACL steps this per iteration with W = 10 epochs and T = 1000 epochs of data (acl_family.md
§0.5). Counting samples instead of steps keeps the schedule right when RCS shrinks the epoch to a
coreset: T comes from ``planned_samples`` (full-data epochs during the coreset warm-up,
coreset-size epochs afterwards). ``lr_at`` is a pure function of s, so a resumed run that restores
its sample counter continues the same schedule exactly. ACL calls ``scheduler.step()`` before
``optimizer.step()``, i.e. iteration i uses the lr after i + 1 steps; the equivalent here is
``lr_at(samples_seen + batch_size)`` (the batch being trained included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["CosineWarmup", "epoch_samples", "planned_samples", "set_lr"]


@dataclass(frozen=True)
class CosineWarmup:
    """Stateless cosine-with-warm-up schedule in samples (see module doc)."""

    base_lr: float
    total_samples: int
    warmup_samples: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.total_samples <= 0:
            raise ValueError(f"total_samples must be > 0, got {self.total_samples}")
        if not 0 <= self.warmup_samples <= self.total_samples:
            raise ValueError(f"warmup_samples={self.warmup_samples} must be in "
                             f"[0, total_samples={self.total_samples}]")

    def lr_at(self, samples_seen: float) -> float:
        """The learning rate after ``samples_seen`` samples."""
        s, w, t = float(samples_seen), float(self.warmup_samples), float(self.total_samples)
        if s < w:
            return self.base_lr * max(s, 0.0) / w
        if s >= t or t <= w:
            return self.min_lr
        frac = (s - w) / (t - w)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def state_dict(self) -> dict[str, Any]:
        """Settings (the schedule has no other state); store it in checkpoints for checks."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, sd: dict[str, Any]) -> CosineWarmup:
        return cls(**sd)


def epoch_samples(n: int, batch_size: int | None = None, drop_last: bool = False) -> int:
    """Samples one epoch over ``n`` items really trains on (``floor(n/bs)*bs`` with drop_last)."""
    if drop_last and batch_size:
        return (n // batch_size) * batch_size
    return n


def planned_samples(epochs: float, full_size: int, coreset_size: int | None = None,
                    warmup_epochs_full: float = 0, batch_size: int | None = None,
                    drop_last: bool = False) -> int:
    """Samples seen in the first ``epochs`` epochs of an RCS schedule.

    ``min(epochs, E_w) * N_full + max(0, epochs - E_w) * N_core``, with ``E_w`` =
    ``warmup_epochs_full`` full-data epochs, then coreset epochs of ``coreset_size`` items
    (``None`` = no coreset: every epoch is full); each size is passed through ``epoch_samples``.
    ``epochs`` may be fractional, so ``planned_samples(lr_warmup_epochs, ...)`` gives W and
    ``planned_samples(total_epochs, ...)`` gives T. Sizes are global (all ranks together).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    n_full = epoch_samples(full_size, batch_size, drop_last)
    n_core = n_full if coreset_size is None else epoch_samples(coreset_size, batch_size,
                                                                  drop_last)
    e_full = min(float(epochs), float(warmup_epochs_full))
    e_core = max(0.0, float(epochs) - float(warmup_epochs_full))
    return int(round(e_full * n_full + e_core * n_core))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr (times the group's optional ``lr_scale``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
