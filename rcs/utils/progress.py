"""Progress bars for every long loop (tqdm), quiet when ``RCS_QUIET=1`` or not rank 0."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _enabled() -> bool:
    if os.environ.get("RCS_QUIET", "0") == "1":
        return False
    return int(os.environ.get("RANK", "0")) == 0


def progress(
    iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it",
    leave: bool = False,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr (disabled on non-zero ranks or RCS_QUIET=1)."""
    return iter(
        tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave,
             disable=not _enabled(), file=sys.stderr, dynamic_ncols=True)
    )


def bar(total: int, desc: str = "", unit: str = "it", leave: bool = False) -> tqdm:
    """A manual tqdm bar (call ``.update(n)``, ``.set_postfix(...)``, ``.close()``)."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not _enabled(),
                file=sys.stderr, dynamic_ncols=True)
