"""Collect the results of several runs into a markdown table and PNG plots.

For each run folder: pretraining time (train + selection seconds from summary.json), the
selection time, and SA / RA of every fine-tuning mode found under finetune*/<mode>/results.json
(written by `rcs finetune`, extended by `rcs eval`). Writes report.md (table, settings, figures),
report.json, robust_vs_time.png and training_curves.png into --out.

  rcs report runs/acl_rcs runs/acl_random runs/acl_full --out report/
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by rcs")
    p.add_argument("--out", default="report", help="folder for report.md and the plots")


def run(args: argparse.Namespace) -> int:
    from rcs.report import make_report

    report = make_report(args.runs, args.out)
    print(report.table)
    print()
    for kind, path in report.files.items():
        print(f"[report] {kind}: {path}")
    return 0
