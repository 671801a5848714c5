"""rcs: robustness-aware coreset selection (RCS) for fast adversarial contrastive learning.

Library API (PUBLISHED_METHODS.md D4.4)::

    selector = rcs.RCSSelector(encoder=lambda x, bn: model.features(x, bn), head=model.head,
                               fraction=0.2)
    coreset = selector.select(train_dataset, val_dataset)
    loader = DataLoader(train_dataset, sampler=rcs.CoresetSampler(coreset, shuffle=True))

Names are imported lazily so that ``rcs --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "RCSSelector": "rcs.selection.rcs",
    "CoresetSampler": "rcs.selection.sampler",
    "ReselectionSchedule": "rcs.selection.sampler",
    "Coreset": "rcs.selection.base",
    "SelectionContext": "rcs.selection.base",
    "build_selector": "rcs.selection.base",
    "register_selector": "rcs.selection.base",
    "load_config": "rcs.config.loader",
    "RunConfig": "rcs.config.schema",
    "build_model": "rcs.models",
    "export_classifier": "rcs.models",
    "build_dataset": "rcs.data",
    "Augment": "rcs.data",
    "Trainer": "rcs.train.trainer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rcs' has no attribute '{name}'")
