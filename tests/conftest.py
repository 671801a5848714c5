"""Shared pytest fixtures (others may append theirs below)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RCS_QUIET", "1")

CIFAR10_SUBSET = Path(os.environ.get(
    "RCS_CIFAR10_SUBSET",
    ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar10_subset.npz"))


@pytest.fixture(scope="session")
def cifar10_subset_path() -> Path:
    """The real CIFAR-10 subset npz (5,551 train / 1,017 test); skips when it is absent."""
    if not CIFAR10_SUBSET.is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR10_SUBSET}")
    return CIFAR10_SUBSET
