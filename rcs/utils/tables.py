"""Markdown tables: the one writer behind every table rcs prints or saves.

``markdown_table(["a", "b"], [[1, 2]])`` gives::

    | a | b |
    |---|---|
    | 1 | 2 |

With ``aligned=True`` every column is padded to its widest cell (for terminals)::

    | method | k   |
    |--------|-----|
    | acl    | 0.1 |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
                   aligned: bool = False, fmt: Callable[[Any], str] = str) -> str:
    """A markdown table with ``header`` and one line per row; cells are written by ``fmt``.

    ``aligned=False``: ``| a | b |`` lines under a ``|---|---|`` rule (compact, for files);
    ``aligned=True``: cells left-justified to the column width, the rule as wide as the column.
    """
    cells = [[fmt(v) for v in row] for row in rows]
    header = [str(h) for h in header]
    if aligned:
        widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        header = [h.ljust(w) for h, w in zip(header, widths)]
        cells = [[v.ljust(w) for v, w in zip(row, widths)] for row in cells]
    else:
        rule = "|" + "---|" * len(header)
    lines = [_line(header), rule] + [_line(row) for row in cells]
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def short_number(v: Any) -> str:
    """Floats with 4 significant digits, anything else as ``str``."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
