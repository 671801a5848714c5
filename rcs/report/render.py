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
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        pre = None if r.pretrain_seconds is None else r.pretrain_seconds / scale
        sel = None if r.select_seconds is None else r.select_seconds / scale
        row = [r.label, r.method, r.selector, _f(r.fraction), _f(r.epochs), _f(pre), _f(sel)]
        row += [_f(r.gpu_hours, 3)] if gpu else []
        row += [r.downstream or "-"] if downstream else []
        row += [_f(r.modes.get(m, {}).get(k)) for _, m, k in cols]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _plt():
    from rcs.utils.optional import require

    matplotlib = require("matplotlib", "plots (rcs report / compare / demo)")

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_robust_vs_time(records: list[RunRecord], path: Path) -> Path | None:
    """RA (AutoAttack where every point has it, else PGD-20) vs pretraining time; None if empty."""
    pts = [(r, m, v) for r in records for m, v in r.modes.items()
           if r.pretrain_seconds is not None and v.get("RA_pgd20") is not None]
    if not pts:
        return None
    use_aa = all(v.get("RA_autoattack") is not None for _, _, v in pts)
    key, name = ("RA_autoattack", "AutoAttack") if use_aa else ("RA_pgd20", "PGD-20")
    gpu = all(r.gpu_hours is not None for r, _, _ in pts)
    unit, scale = ("GPU-hours", None) if gpu else time_unit([r.pretrain_seconds for r, _, _ in pts])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    markers = {"slf": "o", "alf": "s", "aff": "^"}
    for mode in MODES:
        sel = [(r, v) for r, m, v in pts if m == mode]
        if not sel:
            continue
        xs = [r.gpu_hours if gpu else r.pretrain_seconds / scale for r, _ in sel]
        ys = [v[key] for _, v in sel]
        ax.scatter(xs, ys, marker=markers[mode], s=48, label=mode.upper(), zorder=3)
        for x, y, (r, _) in zip(xs, ys, sel):
            ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.margins(x=0.15, y=0.15)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"pretraining time incl. selection ({unit})")
    ax.set_ylabel(f"robust accuracy, {name} (%)")
    ax.set_title("Robust accuracy vs pretraining cost")
    ax.grid(alpha=0.3)
    ax.legend(title="fine-tuning", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training_curves(records: list[RunRecord], path: Path) -> Path | None:
    """Pretraining loss per epoch (left) and fine-tuning loss per epoch (right); None if empty."""
    pre = {r.label: r.pretrain_curve for r in records if r.pretrain_curve}
    ft = [(r.label, m, v["losses"]) for r in records for m, v in r.modes.items() if v["losses"]]
    if not pre and not ft:
        return None
    plt = _plt()
    ncols = 2 if (pre and ft) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.0 * ncols, 4.2), dpi=120, squeeze=False)
    ax_i = 0
    if pre:
        ax = axes[0][ax_i]
        for label, curve in pre.items():
            ax.plot([e for e, _ in curve], [v for _, v in curve], marker=".", label=label)
        ax.set(xlabel="epoch", ylabel="pretraining loss", title="Pretraining")
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax_i += 1
    if ft:
        ax = axes[0][ax_i]
        styles = {"slf": "-", "alf": "--", "aff": ":"}
        for label, mode, losses in ft:
            ax.plot(range(1, len(losses) + 1), losses, styles[mode], marker=".",
                    label=f"{label} {mode.upper()}")
        ax.set(xlabel="epoch", ylabel="fine-tuning loss (CE; TRADES for AFF)",
               title="Fine-tuning")
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
