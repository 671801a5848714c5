"""The ``train`` section: pretraining schedule, optimiser, attack, checkpoints, and the method
settings sections (``train.<name>.*``) the methods register (:mod:`rcs.config.sections`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rcs.config.checks import check, check_in
from rcs.config.model import AttackConfig
from rcs.config.sections import default_sections, renamed


@dataclass
class TrainConfig:
    """Pretraining: method, optimisation, schedule, attack, checkpoints; each method's own
    settings are the sections ``train.<name>`` its file registers (``sections``)."""

    method: str = "acl"
    """acl | dynacl | air | dynacl_air | sat | advcl | rocl | byorl | tikhonov | clae | ifm | hcl |
    mochi | aacl | arocl | adco | caco | rush (see `rcs train --help` for references; methods
    registered by user code work too)"""
    epochs: int = 1000
    """Pretraining epochs (full-data warm-up epochs included)."""
    batch_size: int = 512
    """Global batch: all DDP ranks together (the published 512). Each of W ranks trains
    batch_size / W images per step (W must divide it); the contrastive negatives of a step are
    the whole global batch (embeddings are gathered across ranks)."""
    optimizer: str = "lars"
    """lars | sgd"""
    lr: float = 5.0
    """Peak learning rate after the warm-up (published LARS 5.0 at batch 512)."""
    weight_decay: float = 1e-6
    """Weight decay of the optimizer."""
    momentum: float = 0.9
    """Momentum of the optimizer."""
    nesterov: bool = False
    """Nesterov momentum (optimizer sgd; needs momentum > 0)."""
    trust_coef: float = 1e-3
    """LARS trust coefficient η: local lr = η ||w|| / (||g|| + wd ||w||)."""
    lr_schedule: str = "epoch"
    """epoch (published): linear lr warm-up over lr_warmup_epochs, then cosine to min_lr, as a
    function of epochs done, advanced per step, so a coreset epoch spans the same stretch of the
    curve as a full-data epoch | samples: the same curve over samples seen (coreset epochs move
    it by their share of the data; for comparisons at an equal number of samples). See
    rcs.train.schedule."""
    lr_warmup_epochs: float = 10.0
    """Epochs of linear lr warm-up from 0 (full-data epochs under RCS's warm-up)."""
    min_lr: float = 1e-6
    """The cosine ends at this rate after train.epochs."""
    temperature: float = 0.5
    """Temperature of the contrastive (NT-Xent) loss."""
    attack: AttackConfig = field(default_factory=AttackConfig)
    init: str = ""
    """A pretraining checkpoint whose model (and method-owned modules) this run starts from
    (`rcs train --init`; not a resume: this run has its own folder and settings)."""
    init_continue: bool = False
    """With init: also take its optimizer state, epoch, step and samples seen, so the lr
    schedule and the selection schedule go on from there (a shared warm-up); otherwise both
    start fresh."""
    bn_recalibration: int = 2
    """After each epoch trained on a coreset, re-estimate every BN layer's running statistics
    (the ones attacks, selections and fine-tuning use) from this many random full-data batches
    run through the method's own training forward (0 = off: the statistics are those of the
    coreset batches, as in the published code). A selected coreset is not a random sample, and
    its statistics moved an RCS-trained encoder's held-out RD far more than its weights did
    (docs/results/coreset_quality)."""
    amp: str = "auto"
    """auto (bf16 on GPU, off on CPU) | bf16 | off"""
    channels_last: bool = True
    """Run the model in channels_last memory format on CUDA (faster convolutions there;
    ignored on CPU, where it gains nothing and torch's one-thread backward can crash)."""
    compile: bool = False
    """Wrap the training forward in torch.compile."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0 = off)."""
    checkpoint_every: int = 1
    """Epochs between checkpoints (a checkpoint is also written on SIGTERM/SIGUSR1)."""
    checkpoint_every_steps: int = 0
    """Also checkpoint every N steps inside an epoch (0 = only at epoch ends); for long epochs."""
    deterministic: bool = False
    """Use deterministic algorithms (exact resume on GPU costs some speed; CPU is deterministic)."""
    log_every: int = 10
    """Steps between metric records."""
    sections: dict[str, Any] = field(default_factory=lambda: default_sections("train"),
                                     repr=False, metadata={"sections": "train"})
    """The method settings sections, ``train.<name>.<key>`` (e.g. ``train.advcl.pseudo_every``):
    one instance of each registered settings class (:mod:`rcs.config.sections`), read as
    attributes (``cfg.train.advcl``) and written inline in YAML and ``to_dict``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"TrainConfig has no key {name!r}"
                             + (f" (it is now train.{new})" if (new := renamed("train", name))
                                else ""))

    def validate(self) -> None:
        check(self.epochs > 0, "train.epochs must be > 0")
        check(self.batch_size > 1, "train.batch_size must be > 1 (contrastive losses need pairs)")
        check_in("train.optimizer", self.optimizer, ("lars", "sgd"))
        check(self.lr > 0, "train.lr must be > 0")
        check(self.temperature > 0, "train.temperature must be > 0")
        check_in("train.amp", self.amp, ("auto", "bf16", "off"))
        check(self.bn_recalibration >= 0, "train.bn_recalibration must be >= 0 (0 = off)")
        check(self.lr_warmup_epochs >= 0, "train.lr_warmup_epochs must be >= 0")
        check_in("train.lr_schedule", self.lr_schedule, ("epoch", "samples"))
        check(0 <= self.min_lr <= self.lr, f"train.min_lr={self.min_lr} must be in [0, "
              f"train.lr={self.lr}]")
        self.attack.validate("train.attack")
        for section in self.sections.values():
            if hasattr(section, "validate"):
                section.validate()
