"""Send an rcs job (train, select, finetune, eval) to SLURM through submitit.

  rcs submit train --config configs/cifar10_acl_rcs.yaml --set slurm.gpus_per_node=4
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", choices=["train", "select", "finetune", "eval"], help="command to run")
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="the options of that command, then slurm.* overrides with --set")


def run(args: argparse.Namespace) -> int:
    from rcs.errors import NotAvailableError

    raise NotAvailableError("`rcs submit` is not available yet in this version (SLURM launching "
                            "is tracked in issue 6); run the command directly or under torchrun")
