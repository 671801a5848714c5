"""Learning-rate schedules: linear warm-up, then cosine to ``min_lr``, over epochs or samples.

Both share one curve. With x the run's position, W the warm-up and T the end (same unit)::

    lr(x) = base_lr * x / W                                            for x < W
    lr(x) = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * (x - W) / (T - W)))   for W <= x < T
    lr(x) = min_lr                                                     for x >= T

They differ in what x counts (``train.lr_schedule``):

* ``epoch`` (:class:`EpochCosineWarmup`, the default and the published behaviour): x is epochs,
  W = ``lr_warmup_epochs``, T = ``epochs``, advanced per step inside each epoch:
  the step with 0-based index b of epoch e (1-based) of n batches trains at
  ``lr((e - 1) + (b + 1) / n)``. So every epoch spans the same stretch of the curve whatever its
  length: a coreset epoch of 20% of the data covers as much of the schedule as a full-data
  epoch. This is what the published ACL/RCS code does: it rebuilds its per-step ``LambdaLR``
  (W = 10 x len(loader), T = epochs x len(loader)) every epoch from the current loader length
  and fast-forwards it by (e - 1) x len(loader) steps, calling ``scheduler.step()`` before
  ``optimizer.step()`` (PUBLISHED_METHODS.md R2.1, A0.5).
* ``samples`` (:class:`CosineWarmup`): x is samples seen, W and T the samples of the first
  ``lr_warmup_epochs`` and of all ``epochs`` of this run's plan (:func:`planned_samples`:
  full-data epochs during the coreset warm-up, coreset-size epochs after). The step that brings
  the count to s trains at ``lr(s)``. A coreset epoch then moves the curve by its share of the
  data only, so after the warm-up the coreset epochs get less update than in the paper (1.5x
  to 5x less mean rate for k = 0.2 ... 0.05 with the CIFAR schedule). Use it to compare runs at
  an equal number of samples or steps (e.g. a selector study whose budget is samples seen), or
  when epochs have no fixed meaning; it is not the published schedule.

Both are pure functions of state the checkpoint holds (epoch, batch and the epoch's batch count
for ``epoch``; the sample counter for ``samples``), so a resumed run continues the same
schedule exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["SCHEDULES", "CosineWarmup", "EpochCosineWarmup", "epoch_position", "epoch_samples",
           "planned_samples", "set_lr", "warmup_cosine"]

SCHEDULES = ("epoch", "samples")
"""Values of ``train.lr_schedule``."""


def warmup_cosine(x: float, base_lr: float, total: float, warmup: float = 0.0,
                  min_lr: float = 0.0) -> float:
    """The curve of the module doc at position ``x`` (any unit, the same for all arguments)."""
    x, w, t = float(x), float(warmup), float(total)
    if x < w:
        return base_lr * max(x, 0.0) / w
    if x >= t or t <= w:
        return min_lr
    frac = (x - w) / (t - w)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def epoch_position(epoch: int, batch: int, n_batches: int) -> float:
    """Epochs of schedule done once batch ``batch`` (0-based) of ``epoch`` (1-based, of
    ``n_batches``) is trained: ``(epoch - 1) + (batch + 1) / n_batches``."""
    if epoch < 1 or n_batches < 1 or not 0 <= batch < n_batches:
        raise ValueError(f"need epoch >= 1 and 0 <= batch < n_batches, got epoch={epoch}, "
                         f"batch={batch}, n_batches={n_batches}")
    return (epoch - 1) + (batch + 1) / n_batches


@dataclass(frozen=True)
class EpochCosineWarmup:
    """Stateless cosine-with-warm-up schedule in epochs (``train.lr_schedule: epoch``)."""

    base_lr: float
    epochs: float
    warmup_epochs: float = 0.0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be in "
                             f"[0, epochs={self.epochs}]")

    def lr_at(self, epochs_done: float) -> float:
        """The learning rate at ``epochs_done`` epochs of schedule (fractional)."""
        return warmup_cosine(epochs_done, self.base_lr, self.epochs, self.warmup_epochs,
                             self.min_lr)

    def lr_for_step(self, epoch: int, batch: int, n_batches: int) -> float:
        """The rate of step ``batch`` (0-based) of ``epoch`` (1-based) of ``n_batches``."""
        return self.lr_at(epoch_position(epoch, batch, n_batches))

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, sd: dict[str, Any]) -> EpochCosineWarmup:
        return cls(**sd)


@dataclass(frozen=True)
class CosineWarmup:
    """Stateless cosine-with-warm-up schedule in samples (``train.lr_schedule: samples``)."""

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
        return warmup_cosine(samples_seen, self.base_lr, self.total_samples,
                             self.warmup_samples, self.min_lr)

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
