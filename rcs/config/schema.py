"""Typed configuration of every rcs job (dataclasses).

Each section owns its defaults and validates itself in ``validate()``; ``RunConfig.validate``
calls them all. Defaults follow the published CIFAR-10 ACL+RCS setting (see
``docs/PUBLISHED_METHODS.md`` R2.1 and D4.3); the tiny CPU configs in ``configs/`` override sizes
only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rcs.config.checks import check
from rcs.config.data import AugmentConfig, DataConfig
from rcs.config.evaluate import CORRUPTIONS, EvalConfig
from rcs.config.finetune import FinetuneConfig, FinetuneModeConfig
from rcs.config.log import LOGGERS, LogConfig
from rcs.config.model import ALPHA_2, EPS_8, AttackConfig, ModelConfig
from rcs.config.selection import (
    LIBRARY_CANDIDATE_BATCH,
    SelectionConfig,
    resolve_candidate_batch,
)
from rcs.config.slurm import SlurmConfig
from rcs.config.train import TrainConfig

__all__ = [
    "ALPHA_2", "CORRUPTIONS", "EPS_8", "LIBRARY_CANDIDATE_BATCH", "LOGGERS", "AttackConfig",
    "AugmentConfig", "DataConfig", "EvalConfig", "FinetuneConfig", "FinetuneModeConfig",
    "LogConfig", "ModelConfig", "RunConfig", "SelectionConfig", "SlurmConfig", "TrainConfig",
    "resolve_candidate_batch",
]


@dataclass
class RunConfig:
    """A whole job: data, model, training, selection, fine-tuning, evaluation, launching."""

    name: str = "run"
    """Name of the run (reports, W&B, SLURM job names)."""
    out_dir: str = "runs/run"
    """Run folder: config.yaml, metrics.jsonl, checkpoint.pt, coresets/, summary.json."""
    seed: int = 0
    """Seed of everything random in the run (data split, batch order, augmentation, attacks)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    log: LogConfig = field(default_factory=LogConfig)
    """Metric loggers (jsonl, csv, tensorboard, wandb)."""

    def validate(self) -> RunConfig:
        check(bool(self.out_dir), "out_dir must not be empty")
        check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
              f"device={self.device!r} is not one of auto, cpu, cuda, cuda:N, mps "
              "(e.g. --set device=cuda:0)")
        for section in ("data", "augment", "model", "train", "selection", "finetune", "eval",
                        "slurm", "log"):
            getattr(self, section).validate()
        self.selection.candidate_batch = resolve_candidate_batch(  # the saved config shows it
            self.selection.candidate_batch, self.train.batch_size)
        check(self.selection.method != "rcs" or self.data.val_fraction > 0,
              "selection.method=rcs needs a validation split U: set data.val_fraction > 0 "
              "(e.g. 0.01, as published)")
        return self
