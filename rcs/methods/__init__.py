"""Pretraining methods, one file each, behind a registry (``build_method(name, cfg)``).

Names are imported lazily so that :mod:`rcs.methods.catalog` (names, references, one-line
summaries, used by ``rcs train --help``) is available without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "METHODS": "rcs.methods.base",
    "Method": "rcs.methods.base",
    "MultiForward": "rcs.methods.base",
    "RunContext": "rcs.methods.base",
    "StepOutput": "rcs.methods.base",
    "build_method": "rcs.methods.registry",
    "method_names": "rcs.methods.registry",
    "register_method": "rcs.methods.base",
    "register_settings": "rcs.methods.base",
    "selection_loss_of": "rcs.methods.registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rcs.methods' has no attribute {name!r}")
