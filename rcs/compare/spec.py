"""What an ``rcs compare`` study compares: selectors x fractions x seeds, and how each run is
fine-tuned and evaluated (:class:`CompareSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rcs.errors import ConfigError


@dataclass
class CompareSpec:
    """What to compare. ``overrides`` apply to every run (``--set``); ``finetune_overrides`` to
    the fine-tuning config of every run (on top of the pretraining run's own config)."""

    config: str | None
    selectors: list[str]
    fractions: list[float]
    seeds: list[int]
    out: str
    overrides: list[str] = field(default_factory=list)
    finetune_overrides: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: ["slf"])
    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd20"])
    device: str | None = None
    references: bool = False
    """Also fine-tune and evaluate the reference encoders (:data:`rcs.compare.runs.REFERENCES`)
    for every seed."""
    runs_dir: str | None = None
    """Where the run folders go (default ``out/runs``)."""
    extra_eps: list[float] = field(default_factory=list)
    """Also report PGD-20 robust accuracy at these radii (step eps/4) on the fine-tuned
    classifier of the first mode, e.g. [2/255] where RA at 8/255 sits at the floor (short
    pretraining). Added to finished runs on a re-run without retraining anything."""
    share_warmup: bool = True
    """Train the full-data warm-up once per (fraction, seed) and start every coreset selector
    of that fraction and seed from its checkpoint (the warm-up does not depend on the selector,
    and resuming is exact, so each run is what it would be from scratch; its measured time is
    counted in every run that starts from it)."""

    @property
    def runs(self) -> Path:
        return Path(self.runs_dir) if self.runs_dir else Path(self.out) / "runs"

    def validate(self) -> CompareSpec:
        from rcs.selection.base import SELECTORS, load_selectors

        load_selectors()
        if not self.selectors or not self.seeds:
            raise ConfigError("compare needs at least one selector and one seed")
        for s in self.selectors:
            if s not in SELECTORS:
                raise ConfigError(f"unknown selector '{s}'; available: "
                                  f"{', '.join(sorted(SELECTORS))}")
        if any(s != "full" for s in self.selectors) and not self.fractions:
            raise ConfigError("compare needs at least one fraction for the coreset selectors")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"fraction {f} must be in (0, 1]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {self.seeds} contain duplicates")
        if "pgd20" not in self.attacks:
            raise ConfigError("compare reports robust accuracy: attacks must include pgd20")
        return self
