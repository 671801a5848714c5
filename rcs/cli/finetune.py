"""Fine-tune a pretrained encoder with the RobustSSL protocol and evaluate it.

Modes: SLF (frozen encoder, linear head on clean data), ALF (linear head on PGD-10 examples),
AFF (TRADES beta=6 on the whole dual-BN network, then export of the 'pgd' branch).

  rcs finetune --checkpoint runs/x/checkpoint.pt --dataset cifar10 --mode all
"""

from __future__ import annotations

import argparse

from rcs.cli.main import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="pretraining checkpoint (.pt)")
    p.add_argument("--dataset", default=None,
                   help="downstream dataset name (sets data.name), e.g. cifar10, cifar100, stl10")
    p.add_argument("--mode", default="slf", choices=["slf", "alf", "aff", "all"],
                   help="fine-tuning mode; 'all' runs SLF, ALF and AFF, each with its own settings")


def run(args: argparse.Namespace) -> int:
    from rcs.errors import NotAvailableError

    raise NotAvailableError("`rcs finetune` is not available yet in this version (the SLF/ALF/AFF "
                            "engine is tracked in issue 5); `rcs demo` shows what runs today")
