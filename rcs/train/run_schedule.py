"""The trainer's schedule arithmetic: samples per epoch, the lr schedule and its value per step,
the share of the run done (:class:`RunSchedule`, a part of :class:`rcs.train.trainer.Trainer`).
"""

from __future__ import annotations

from rcs.selection.base import budget
from rcs.train.schedule import (
    CosineWarmup,
    EpochCosineWarmup,
    epoch_position,
    planned_samples,
)


class RunSchedule:
    """Schedule methods of :class:`rcs.train.trainer.Trainer` (uses its ``cfg``, ``env``,
    ``candidates``, ``schedule`` and ``progress``)."""

    def epoch_size(self, full: bool) -> int:
        """Samples one epoch feeds (padded to a multiple of the world size, as the sampler does)."""
        n = len(self.candidates) if full else budget(self.cfg.selection.fraction,
                                                     len(self.candidates))
        w = self.env.world_size
        return -(-n // w) * w

    def planned_samples(self, epochs: float) -> int:
        """Samples seen after ``epochs`` epochs of this run's schedule (warm-up, then coreset)."""
        s = self.cfg.selection
        return planned_samples(
            epochs, self.epoch_size(full=True),
            None if s.method == "full" else self.epoch_size(full=False), s.warmup_epochs)

    def build_schedule(self) -> EpochCosineWarmup | CosineWarmup:
        """The lr schedule of ``train.lr_schedule`` (see :mod:`rcs.train.schedule`)."""
        t = self.cfg.train
        if t.lr_schedule == "epoch":
            return EpochCosineWarmup(base_lr=t.lr, epochs=t.epochs, min_lr=t.min_lr,
                                     warmup_epochs=min(float(t.epochs), t.lr_warmup_epochs))
        total = self.planned_samples(t.epochs)
        return CosineWarmup(base_lr=t.lr, total_samples=total, min_lr=t.min_lr,
                            warmup_samples=min(total, self.planned_samples(t.lr_warmup_epochs)))

    def lr_for_step(self, epoch: int, bi: int, n_batches: int, samples_after: int) -> float:
        """The rate of step ``bi`` (0-based) of ``epoch`` (``n_batches`` batches), after which
        ``samples_after`` samples are seen: the schedule's value once the step is done (as the
        published code, which steps its scheduler before the optimizer)."""
        if isinstance(self.schedule, EpochCosineWarmup):
            return self.schedule.lr_for_step(epoch, bi, n_batches)
        return self.schedule.lr_at(samples_after)

    def run_progress(self, epoch: int, bi: int, n_batches: int) -> float:
        """Share of the run done after step ``bi`` of ``epoch``, in the schedule's unit (epochs
        or samples), in [0, 1]; methods with their own schedules get it (BYORL's EMA rate)."""
        if isinstance(self.schedule, EpochCosineWarmup):
            return min(1.0, epoch_position(epoch, bi, n_batches) / self.cfg.train.epochs)
        return min(1.0, self.progress.samples_seen / max(1, self.schedule.total_samples))
