"""Evaluate an exported classifier: clean accuracy, PGD-20, AutoAttack, common corruptions.

  rcs eval --checkpoint runs/x/finetune/slf.pt --attacks clean,pgd20,autoattack
"""

from __future__ import annotations

import argparse

from rcs.cli.main import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="fine-tuned classifier checkpoint (.pt)")
    p.add_argument("--attacks", default="clean,pgd20",
                   help="comma-separated: clean, pgd20, autoattack, corruptions")
    p.add_argument("--n-ex", type=int, default=0,
                   help="evaluate AutoAttack on the first N test images only (0 = all)")


def run(args: argparse.Namespace) -> int:
    from rcs.errors import NotAvailableError

    raise NotAvailableError("`rcs eval` is not available yet in this version (the evaluation "
                            "engine is tracked in issue 5)")
