"""Pretrain a robust encoder: full-data warm-up, then a coreset re-selected every F epochs.

Methods (train.method, see --method): acl, dynacl, air, dynacl_air, sat, advcl, rocl, byorl,
tikhonov, clae, ifm, hcl, mochi, aacl, arocl, adco, caco, rush; train.tikhonov.lam > 0 adds
the contrastive input-gradient penalty to any of them, and train.layerwise.stages /
train.layerwise.weights the layer-wise contrastive loss (L = L_method + Σ_k α_k L_k over
encoder stages k) to those with an embedding loss.
Selectors: full, random, rcs and the baselines (selection.method). The run folder gets
config.yaml (resolved), metrics.jsonl, checkpoint.pt (atomic; written every epoch and on
SIGTERM/SIGUSR1), coresets/epoch_*.npz and summary.json.
Running the same command again resumes from checkpoint.pt exactly (same coreset, same RNG);
a resume with a setting that changes the result is refused (each differing key is named), while
logging, checkpoint frequency and device may change (recorded in metrics.jsonl). One process
writes a run folder at a time (OUT/.rcs-lock).
Multi-process: torchrun --nproc_per_node N -m rcs.cli.main train ... (gloo on CPU, nccl on GPU).

  rcs train --config configs/tiny/cifar10_acl_rcs.yaml
  rcs train --config configs/cifar10_acl_rcs.yaml --set selection.fraction=0.1 --out runs/k01
  rcs train --config configs/tiny/cifar10_rocl_rcs.yaml       # RoCL (single BN) + RCS
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from rcs.cli.common import add_config_args
from rcs.config.short_keys import SHORT_KEYS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    from rcs.methods.catalog import method_help

    p.add_argument("--method", default=None,
                   help=f"pretraining method (sets train.method): {method_help()}")
    p.add_argument("--selector", default=None,
                   help="coreset selector (sets selection.method): full | random | rcs | ...")
    p.add_argument("--fraction", type=float, default=None,
                   help="coreset fraction k in (0, 1] (sets selection.fraction)")
    p.add_argument("--epochs", type=int, default=None, help="sets train.epochs")
    p.add_argument("--until-epoch", dest="until_epoch", type=int, default=None, metavar="E",
                   help="train through epoch E of the configured schedule and stop there with a "
                        "checkpoint (e.g. a warm-up job; the same command without it continues)")
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from this pretraining checkpoint's weights (sets train.init; "
                        "not a resume: a folder that already holds a run refuses it unless "
                        "--resume none)")
    p.add_argument("--init-continue", dest="init_continue", action="store_true", default=None,
                   help="with --init: also continue its optimizer, epoch and lr schedule "
                        "(a shared warm-up; sets train.init_continue)")
    p.add_argument("--coreset", default=None, metavar="FILE",
                   help="use this coreset (`rcs select --out FILE`) at the run's first "
                        "selection instead of selecting (sets selection.coreset); later "
                        "selections follow selection.every (0: keep it to the end)")
    p.add_argument("--resume", default="auto",
                   help="auto: continue OUT/checkpoint.pt when it exists (default); none: start "
                        "fresh, keeping an older run in OUT/previous/<time>/; or the path of a "
                        "checkpoint to continue from (with its settings)")


FLAGS = tuple(SHORT_KEYS.items())
"""``rcs train`` flags and the config keys they set (:data:`rcs.config.short_keys.SHORT_KEYS`,
which ``--sweep`` reads too)."""


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """``key=value`` overrides for the ``rcs train`` flags given in ``args``."""
    out = []
    for flag, key in FLAGS:
        value = getattr(args, flag, None)
        if value is not None and value is not False:
            out.append(f"{key}={value}")
    return out


def train_config(args: argparse.Namespace, more: list[str] | tuple[str, ...] = ()) -> Any:
    """The run config of ``rcs train`` ``args``: config file, ``--set`` overrides, then ``more``
    overrides, then the flags (:data:`FLAGS`). The one place the flags are applied: ``rcs
    train``, ``rcs submit train`` and the SLURM job (:class:`rcs.cli.slurm_job.RcsJob`)."""
    from rcs.cli.common import resolve_config

    if more:
        args = copy.copy(args)
        args.overrides = list(args.overrides or []) + list(more)
    return resolve_config(args, flag_overrides(args))


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import print_table
    from rcs.train.trainer import Trainer
    from rcs.utils.signals import TrainingInterrupted

    cfg = train_config(args)
    trainer = Trainer(cfg, resume=args.resume)
    try:
        summary = trainer.fit(until_epoch=args.until_epoch)
    except TrainingInterrupted as e:
        print(f"rcs train: {e}. Run the same command again to resume.")
        return 128 + e.signum
    if trainer.env.is_main:
        print_table([{k: summary[k] for k in ("method", "selector", "fraction", "epochs",
                                              "selections", "train_seconds", "select_seconds",
                                              "final_loss")}])
        print(f"run folder: {cfg.out_dir}")
    return 0
