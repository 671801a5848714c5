"""RobustSSL fine-tuning of a pretrained robust encoder: SLF, ALF, AFF.

* :func:`finetune_linear` - SLF (clean CE) / ALF (PGD-10 CE) linear head on the frozen encoder;
* :func:`finetune_aff` - TRADES (beta = 6) on the whole dual-BN network, then 'pgd' export;
* :func:`resolve_mode` - each mode's epochs / lr / batch / milestones from the config or from
  the published protocol of the pretraining method (no carry-over between modes);
* :func:`run_finetune` - modes in order, evaluation, JSON results (what ``rcs finetune`` runs);
* :func:`label_fraction_subset` - the class-balanced, seeded 1 % / 10 % label subsets;
* :func:`load_classifier` / :func:`save_classifier` - the exported classifier's checkpoint.
"""

from __future__ import annotations

from rcs.data.augment import crop_flip
from rcs.finetune.aff import finetune_aff
from rcs.finetune.labels import label_fraction_subset
from rcs.finetune.linear import finetune_linear, linear_classifier
from rcs.finetune.loop import FitResult, fit, lr_at
from rcs.finetune.protocol import MODES, PROTOCOLS, ModeSettings, resolve_mode
from rcs.finetune.runner import (
    default_out,
    finetune_config,
    resolve_branch,
    results_table,
    run_finetune,
)
from rcs.models.pretrained import (
    Pretrained,
    build_classifier,
    load_classifier,
    load_pretrained,
    pretrained_model,
    save_classifier,
)

__all__ = [
    "MODES", "PROTOCOLS", "FitResult", "ModeSettings", "Pretrained", "build_classifier",
    "crop_flip", "default_out", "finetune_aff", "finetune_config", "finetune_linear", "fit",
    "label_fraction_subset", "linear_classifier", "load_classifier", "load_pretrained", "lr_at",
    "pretrained_model", "resolve_branch", "resolve_mode", "results_table", "run_finetune",
    "save_classifier",
]
