"""Collect the results of several runs into a markdown table and PNG plots.

  rcs report runs/acl_rcs runs/acl_random --out report/
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by rcs")
    p.add_argument("--out", default="report", help="folder for report.md and the plots")


def run(args: argparse.Namespace) -> int:
    from rcs.errors import NotAvailableError

    raise NotAvailableError("`rcs report` is not available yet in this version (tracked in "
                            "issue 5); each run's metrics.jsonl and summary.json hold its results")
