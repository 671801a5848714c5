"""Reports over several runs: a markdown table, PNG figures and a JSON dump (``rcs report``).

``make_report(["runs/acl_rcs", "runs/acl_random"], "report/")`` writes ``report.md``,
``report.json``, ``robust_vs_time.png`` and ``training_curves.png`` (the figures only when
there is something to plot).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rcs.errors import NotAvailableError
from rcs.report.collect import RunRecord, collect, collect_run
from rcs.report.render import (
    markdown_table,
    plot_robust_vs_time,
    plot_training_curves,
    time_unit,
)
from rcs.utils.atomic import atomic_write_text
from rcs.utils.tables import markdown_table as table

__all__ = ["Report", "RunRecord", "collect", "collect_run", "make_report", "markdown_table",
           "plot_robust_vs_time", "plot_training_curves", "time_unit"]

NOTES = """\
Pretraining time is wall time of training plus coreset selection (`train_seconds +
select_seconds` of each run's summary.json); GPU-h multiplies it by the number of GPUs.
SA: clean test accuracy. RA PGD-20: L-inf PGD, eps 8/255, step 2/255, 20 steps, random start,
eval mode. RA AA: AutoAttack (standard, L-inf 8/255). CA: mean accuracy over the common
corruptions and severities. Accuracies in %, of the last-epoch fine-tuned model (no test-set
model selection). SLF: linear head on the frozen encoder; ALF: linear head on PGD-10 examples;
AFF: TRADES (beta 6) on the whole dual-BN network, 'pgd' branch exported."""


@dataclass
class Report:
    """What :func:`make_report` wrote: the markdown table and every file by kind."""

    table: str
    records: list[RunRecord]
    files: dict[str, Path] = field(default_factory=dict)


def make_report(runs: list[str | Path], out: str | Path) -> Report:
    """Collect ``runs`` and write the report files into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = collect(runs)
    files: dict[str, Path] = {}
    fig1 = fig2 = None
    no_plots = ""
    try:
        fig1 = plot_robust_vs_time(records, out / "robust_vs_time.png")
        fig2 = plot_training_curves(records, out / "training_curves.png")
    except NotAvailableError as e:  # matplotlib is an extra: the table is written anyway
        no_plots = f"**Plots skipped:** {e}"
        print(f"[report] plots skipped: {e}")
    table = markdown_table(records)
    parts = ["# rcs report", "", table, "", NOTES, ""]
    if no_plots:
        parts += [no_plots, ""]
    odd = sorted({(v["pgd"].get("steps"), round(255 * (v["pgd"].get("eps") or 0), 3))
                  for r in records for v in r.modes.values() if v.get("pgd")} - {(20, 8.0)})
    if odd:
        parts += ["**Note:** some PGD evaluations used other settings (steps, eps x 255): "
                  + ", ".join(map(str, odd)) + ".", ""]
    settings = _settings(records)
    if settings:
        parts += ["## Fine-tuning settings", "", settings, ""]
    if fig1:
        parts += ["## Robust accuracy vs pretraining time", "", f"![robust vs time]({fig1.name})",
                  ""]
        files["robust_vs_time"] = fig1
    if fig2:
        parts += ["## Training curves", "", f"![training curves]({fig2.name})", ""]
        files["training_curves"] = fig2
    files["markdown"] = atomic_write_text(out / "report.md", "\n".join(parts))
    dump = [{**{k: v for k, v in asdict(r).items() if k != "path"}, "path": str(r.path),
             "pretrain_seconds": r.pretrain_seconds, "gpu_hours": r.gpu_hours} for r in records]
    files["json"] = atomic_write_text(out / "report.json",
                                      json.dumps(dump, indent=2, default=str))
    return Report(table, records, files)


def _settings(records: list[RunRecord]) -> str:
    rows = {}
    for r in records:
        for mode, v in r.modes.items():
            s = v.get("settings") or {}
            if s:
                key = (mode, s.get("epochs"), s.get("lr"), s.get("batch_size"),
                       tuple(s.get("milestones") or ()), s.get("protocol"))
                rows.setdefault(key, []).append(r.label)
    if not rows:
        return ""
    return table(["mode", "epochs", "lr", "batch", "milestones", "protocol", "runs"],
                 [[mode.upper(), ep, lr, bs, ",".join(map(str, ms)), proto, ", ".join(labels)]
                  for (mode, ep, lr, bs, ms, proto), labels in rows.items()])
