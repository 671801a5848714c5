"""SIGTERM / SIGUSR1 -> a flag the training loop checks between steps (then it checkpoints)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopFlag:
    """Installs handlers (main thread only) that record the first stop signal received
    (``signum``) and every signal received (``received``). ``signals`` defaults to SIGTERM and
    SIGUSR1; the SLURM launcher adds submitit's preemption/time-out signal (SIGUSR2)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, signals: tuple[int, ...] | None = None) -> None:
        self.signum: int | None = None
        self.received: set[int] = set()
        self.signals = tuple(signals) if signals is not None else self.SIGNALS
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.add(signum)
        if self.signum is None:
            self.signum = signum

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        self._old.clear()

    @property
    def set(self) -> bool:
        return self.signum is not None


class TrainingInterrupted(Exception):
    """Raised after a stop signal once the checkpoint is safely written."""

    def __init__(self, signum: int, checkpoint: str):
        super().__init__(f"stopped by signal {signum}; checkpoint saved to {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint
