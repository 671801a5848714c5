"""Render collected runs as a markdown table and PNG figures (matplotlib, Agg backend).

* ``report.md``: one row per run (and downstream dataset): method, selector, coreset fraction,
  pretraining time (train + selection) and the selection share, GPU-hours for CUDA runs, and
  SA / RA (PGD-20; AutoAttack and corruption accuracy where evaluated) for each fine-tuning mode;
* ``robust_vs_time.png``: robust accuracy of each mode against pretraining time (the RCS
  paper's speed/robustness trade-off figure);
* ``training_curves.png``: pretraining loss per epoch, and fine-tuning loss per epoch per mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcs.report.collect import MODES, RunRecord
from rcs.report.time_plot import (
    MIN_SPAN,
    Panel,
    Point,
    accuracy_limits,
    plot_accuracy_vs_time,
)
from rcs.report.time_plot import colour as time_colour
from rcs.report.time_plot import pyplot as _plt
from rcs.utils.tables import markdown_table as table

__all__ = ["MIN_SPAN", "accuracy_limits", "markdown_table", "plot_robust_vs_time",
           "plot_training_curves", "time_unit"]


def time_unit(seconds: list[float]) -> tuple[str, float]:
    """A readable unit for these durations: (name, seconds per unit)."""
    top = max(seconds, default=0.0)
    if top >= 2 * 3600:
        return "h", 3600.0
    if top >= 120:
        return "min", 60.0
    return "s", 1.0


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _columns(records: list[RunRecord]) -> list[tuple[str, str, str]]:
    """(header, mode, key) for every accuracy column present in at least one record."""
    cols = []
    for mode in MODES:
        if not any(mode in r.modes for r in records):
            continue
        for key, name in (("SA", "SA"), ("RA_pgd20", "RA PGD-20"), ("RA_autoattack", "RA AA"),
                          ("CA", "CA")):
            if any(r.modes.get(mode, {}).get(key) is not None for r in records):
                cols.append((f"{mode.upper()} {name}", mode, key))
    return cols


def markdown_table(records: list[RunRecord]) -> str:
    """One row per record: method, selector, k, epochs, pretraining and selection time,
    GPU-hours (CUDA runs), downstream dataset (when several) and the accuracy columns."""
    secs = [r.pretrain_seconds for r in records if r.pretrain_seconds is not None]
    unit, scale = time_unit(secs)
    gpu = any(r.gpu_hours is not None for r in records)
    downstream = len({r.downstream for r in records}) > 1
    head = ["run", "method", "selector", "k", "epochs", f"pretrain ({unit})",
            f"selection ({unit})"]
    head += ["GPU-h"] if gpu else []
    head += ["downstream"] if downstream else []
    cols = _columns(records)
    head += [c[0] for c in cols]
    rows = []
    for r in records:
        pre = None if r.pretrain_seconds is None else r.pretrain_seconds / scale
        sel = None if r.select_seconds is None else r.select_seconds / scale
        row = [r.label, r.method, r.selector, _f(r.fraction), _f(r.epochs), _f(pre), _f(sel)]
        row += [_f(r.gpu_hours, 3)] if gpu else []
        row += [r.downstream or "-"] if downstream else []
        row += [_f(r.modes.get(m, {}).get(k)) for _, m, k in cols]
        rows.append(row)
    return table(head, rows)


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


MODE_MARKERS = {"slf": "o", "alf": "s", "aff": "^"}
MODE_STYLES = {"slf": "-", "alf": "--", "aff": ":"}


def group_key(r: RunRecord) -> tuple[Any, ...]:
    """Runs whose configs differ only in their seed (and name / out_dir) share a group (mean
    and spread over seeds); a run without a saved config is a group of its own."""
    return (r.setup or f"run:{r.path}", r.downstream)


def group_label(runs: list[RunRecord]) -> str:
    """A run's own label, or ``method selector k=..`` with the number of seeds of a group."""
    if len({r.label for r in runs}) == 1:
        return runs[0].label
    r = runs[0]
    k = "" if r.fraction is None else f" k={r.fraction:g}"
    return f"{r.method} {r.selector}{k} ({len(runs)} seeds)"


def groups(records: list[RunRecord]) -> dict[tuple[Any, ...], list[RunRecord]]:
    """Records by :func:`group_key`, in order of first appearance."""
    out: dict[tuple[Any, ...], list[RunRecord]] = {}
    for r in records:
        out.setdefault(group_key(r), []).append(r)
    return out


def colours(records: list[RunRecord]) -> dict[tuple[Any, ...], Any]:
    """One colour per group, the same in every panel and figure of a report."""
    return {k: time_colour(i) for i, k in enumerate(groups(records))}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    m = sum(values) / n
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return m, sd


def eval_sizes(records: list[RunRecord], modes: list[str] | None = None) -> list[int]:
    return sorted({int(v["n_test"]) for r in records for m, v in r.modes.items()
                   if v.get("n_test") and (modes is None or m in modes)})


def plot_robust_vs_time(records: list[RunRecord], path: Path) -> Path | None:
    """RA (AutoAttack where every point has it, else PGD-20) vs pretraining time; None if empty.

    One point per group of runs that differ only in their seed and per fine-tuning mode (marker
    shape): the mean over seeds with error bars of one standard deviation in both directions;
    the colour is the group's (as in the training curves). The y-axis spans at least
    :data:`MIN_SPAN` points and the title gives the number of test images."""
    pts = [(r, m, v) for r in records for m, v in r.modes.items()
           if r.pretrain_seconds is not None and v.get("RA_pgd20") is not None]
    if not pts:
        return None
    use_aa = all(v.get("RA_autoattack") is not None for _, _, v in pts)
    key, name = ("RA_autoattack", "AutoAttack") if use_aa else ("RA_pgd20", "PGD-20")
    gpu = all(r.gpu_hours is not None for r, _, _ in pts)
    unit, scale = ("GPU-hours", 1.0) if gpu else time_unit([r.pretrain_seconds
                                                             for r, _, _ in pts])
    colour = colours(records)
    panel, seeds = Panel(f"robust accuracy, {name} (%)"), []
    for gk, runs in groups([r for r, _, _ in pts]).items():
        label = group_label(runs)
        for mode in MODES:
            vals = [(r.gpu_hours if gpu else r.pretrain_seconds / scale, r.modes[mode][key])
                    for r in runs if mode in r.modes and r.modes[mode].get(key) is not None]
            if not vals:
                continue
            (x, sx), (y, sy) = mean_std([v[0] for v in vals]), mean_std([v[1] for v in vals])
            seeds.append(len(vals))
            many = len(vals) > 1
            panel.points.append(Point(x, y, colour[gk], MODE_MARKERS[mode],
                                      xerr=sx if many else None, yerr=sy if many else None,
                                      label=f"{label}, {mode.upper()}"))
    ns = eval_sizes(records)
    spread = "mean ± 1 std over seeds" if max(seeds, default=1) > 1 else "one seed per point"
    n_text = (f"n = {'/'.join(map(str, ns))} test images (1 image = {100 / min(ns):.2g} points)"
              if ns else "")
    return plot_accuracy_vs_time(
        [panel], path, f"pretraining time incl. selection ({unit})",
        f"Robust accuracy vs pretraining cost\n{n_text}; {spread}".strip("; \n"))


def plot_training_curves(records: list[RunRecord], path: Path) -> Path | None:
    """Pretraining loss per epoch (left) and fine-tuning loss per epoch (right); None if empty.
    Each run has its group's colour in both panels (fine-tuning modes by line style)."""
    pre = [r for r in records if r.pretrain_curve]
    ft = [(r, m, v["losses"]) for r in records for m, v in r.modes.items() if v["losses"]]
    if not pre and not ft:
        return None
    plt = _plt()
    colour = colours(records)
    ncols = 2 if (pre and ft) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.4), dpi=120, squeeze=False)
    ax_i = 0
    if pre:
        ax = axes[0][ax_i]
        seen: set[str] = set()
        for r in pre:
            if r.label in seen:  # one curve per run (a run has one record per downstream)
                continue
            seen.add(r.label)
            ax.plot([e for e, _ in r.pretrain_curve], [v for _, v in r.pretrain_curve],
                    marker=".", color=colour[group_key(r)], label=r.label)
        ax.set(xlabel="epoch", ylabel="pretraining loss", title="Pretraining")
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax_i += 1
    if ft:
        ax = axes[0][ax_i]
        for r, mode, losses in ft:
            ax.plot(range(1, len(losses) + 1), losses, MODE_STYLES[mode], marker=".",
                    color=colour[group_key(r)], label=f"{r.label} {mode.upper()}")
        ax.set(xlabel="epoch", ylabel="fine-tuning loss (CE; TRADES for AFF)",
               title="Fine-tuning")
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
