"""The accuracy-vs-pretraining-time figure: one drawing for ``rcs report`` and ``rcs compare``.

Callers turn their results into :class:`Panel` s of :class:`Point` s (a mean over seeds with
error bars, or a faint single run behind it) and :func:`plot_accuracy_vs_time` draws them:
one panel per accuracy, the x-axis from 0 (time), the y-axis at least :data:`MIN_SPAN` points
tall, the legend right of the last panel, the PNG written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_SPAN = 10.0
"""Accuracy axes span at least this many percentage points, so a gap of one test image is not
drawn as a cliff."""


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (NotAvailableError when matplotlib is missing)."""
    from rcs.utils.optional import require

    matplotlib = require("matplotlib", "plots (rcs report / compare / demo)")

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def accuracy_limits(lo: float, hi: float, min_span: float = MIN_SPAN) -> tuple[float, float]:
    """Y-limits holding [lo, hi] with a margin, at least ``min_span`` points wide, in [0, 100]."""
    pad = max(1.0, 0.1 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    if lo < 0:
        lo, hi = 0.0, max(hi - lo, min_span)
    if hi > 100:
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    return lo, hi


def colour(i: int) -> str:
    """The i-th colour of matplotlib's tab10 cycle (``C0`` ... ``C9``)."""
    return f"C{i % 10}"


@dataclass(frozen=True)
class Point:
    """One marker: accuracy ``y`` (%) at time ``x``, with optional error bars (one standard
    deviation); a ``faint`` point is a single run drawn small and translucent, without bars."""

    x: float
    y: float
    color: Any
    marker: str = "o"
    xerr: float | None = None
    yerr: float | None = None
    label: str | None = None
    faint: bool = False


@dataclass
class Panel:
    """One axes: its y-label and points."""

    ylabel: str
    points: list[Point] = field(default_factory=list)

    def limits(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """(x-limits, y-limits) holding every point and bar; None without points."""
        if not self.points:
            return None
        lo = min(p.y - (p.yerr or 0.0) for p in self.points)
        hi = max(p.y + (p.yerr or 0.0) for p in self.points)
        xmax = max(p.x + (p.xerr or 0.0) for p in self.points)
        return (0.0, 1.12 * xmax if xmax > 0 else 1.0), accuracy_limits(lo, hi)


def plot_accuracy_vs_time(panels: list[Panel], path: Path, xlabel: str, title: str) -> Path:
    """Draw ``panels`` side by side (see the module doc) and write the PNG to ``path``."""
    plt = pyplot()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(7.6 if n == 1 else 5.2 * n, 4.6), dpi=120,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for p in panel.points:
            if p.faint:
                ax.scatter(p.x, p.y, color=p.color, marker=p.marker, alpha=0.35, s=18)
            else:
                ax.errorbar(p.x, p.y, xerr=p.xerr, yerr=p.yerr, fmt=p.marker, color=p.color,
                            ms=7, capsize=3, zorder=3, label=p.label)
        lim = panel.limits()
        if lim:
            ax.set_xlim(*lim[0])
            ax.set_ylim(*lim[1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
    if n == 1:
        axes[0][0].set_title(title, fontsize=9)
    else:
        fig.suptitle(title, fontsize=9)
    if any(p.label for panel in panels for p in panel.points):
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5),
                           frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
