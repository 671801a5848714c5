"""The ``log`` section: which metric loggers a run writes to."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcs.config.checks import check_in

LOGGERS = ("jsonl", "csv", "tensorboard", "wandb")


@dataclass
class LogConfig:
    """Where run metrics go: metrics.jsonl always, plus the loggers listed here."""

    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    """Any of jsonl (always on) | csv (<run>/csv/<event>.csv) | tensorboard (<run>/tb; needs the
    tensorboard package) | wandb (<run>/wandb; needs wandb), for pretraining, selection and
    fine-tuning alike."""
    wandb_project: str = "rcs"
    """W&B project the runs are logged to."""
    wandb_entity: str = ""
    """W&B entity (team or user); empty: your default."""
    wandb_group: str = ""
    """W&B group of the runs (e.g. a sweep's name); empty: none."""
    wandb_mode: str = "offline"
    """offline (default: no network; upload later with `wandb sync <run>/wandb/offline-run-*`) |
    online | disabled."""
    wandb_dir: str = ""
    """Folder in which W&B makes its wandb/ folder; empty: the run folder (<run>/wandb)."""

    def validate(self) -> None:
        for n in self.loggers:
            check_in("log.loggers entry", n, LOGGERS)
        check_in("log.wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))
