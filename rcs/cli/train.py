"""Pretrain a robust encoder: full-data warm-up, then a coreset re-selected every F epochs.

Methods (train.method, see --method): acl, dynacl, air, dynacl_air, sat, advcl, rocl, byorl,
tikhonov, clae, ifm, hcl, mochi, aacl, arocl, adco, caco, rush; train.tikhonov_lambda > 0 adds
the contrastive input-gradient penalty to any of them, and train.layerwise_stages /
train.layerwise_weights the layer-wise contrastive loss (L = L_method + Σ_k α_k L_k over
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

from rcs.cli.main import add_config_args


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
    p.add_argument("--resume", default="auto",
                   help="auto: continue OUT/checkpoint.pt when it exists (default); none: start "
                        "fresh, keeping an older run in OUT/previous/<time>/; or the path of a "
                        "checkpoint to continue from (with its settings)")


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import print_table, resolve_config
    from rcs.train.signals import TrainingInterrupted
    from rcs.train.trainer import Trainer

    extra = []
    for flag, key in (("method", "train.method"), ("selector", "selection.method"),
                      ("fraction", "selection.fraction"), ("epochs", "train.epochs")):
        if getattr(args, flag) is not None:
            extra.append(f"{key}={getattr(args, flag)}")
    cfg = resolve_config(args, extra)
    trainer = Trainer(cfg, resume=args.resume)
    try:
        summary = trainer.fit()
    except TrainingInterrupted as e:
        print(f"rcs train: {e}. Run the same command again to resume.")
        return 128 + e.signum
    if trainer.env.is_main:
        print_table([{k: summary[k] for k in ("method", "selector", "fraction", "epochs",
                                              "selections", "train_seconds", "select_seconds",
                                              "final_loss")}])
        print(f"run folder: {cfg.out_dir}")
    return 0
