"""Robustness evaluation of an exported single-BN classifier ([0, 1] NCHW input -> logits).

* :func:`clean_accuracy`, :func:`pgd_accuracy` - SA and PGD-20 RA (CE, eval mode, random start);
* :func:`autoattack_accuracy` - bridge to the AutoAttack package (optional extra);
* :func:`corruption_accuracy` - CIFAR-10-C / CIFAR-100-C ``.npy`` files, per severity and mean;
* :func:`certified_accuracy` - randomized-smoothing certification (Cohen et al.'s CERTIFY);
* :func:`evaluate` - any of them by name (``clean, pgd20, autoattack, corruptions,
  smoothing``).

The classifier is whatever ``rcs.models.export_classifier`` or ``rcs finetune`` produced (or any
module with the same contract), so torchattacks / AutoAttack / RobustBench work on it as is.
"""

from __future__ import annotations

from rcs.evaluate.accuracy import clean_accuracy, iter_batches, pgd_accuracy, predict
from rcs.evaluate.autoattack import autoattack_accuracy, autoattack_available, find_autoattack
from rcs.evaluate.corruptions import corruption_accuracy, load_corruption
from rcs.evaluate.smoothing import certified_accuracy, certify, lower_confidence_bound
from rcs.evaluate.suite import ATTACKS, evaluate, headline, sanity_check

__all__ = [
    "ATTACKS", "autoattack_accuracy", "autoattack_available", "certified_accuracy", "certify",
    "clean_accuracy", "corruption_accuracy", "evaluate", "find_autoattack", "headline",
    "iter_batches", "load_corruption", "lower_confidence_bound", "pgd_accuracy", "predict",
    "sanity_check",
]
