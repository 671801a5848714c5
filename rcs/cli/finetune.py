"""Fine-tune a pretrained encoder with the RobustSSL protocol and evaluate it.

Modes: SLF (frozen encoder, linear head on clean data), ALF (linear head on PGD-10 examples),
AFF (TRADES beta=6 on the whole dual-BN network, then export of the 'pgd' branch). Each mode's
epochs / lr / batch size / milestones come from finetune.<mode>.* when set, otherwise from the
published protocol of the checkpoint's pretraining method (finetune.protocol=auto). After each
mode the exported classifier is evaluated on the test split (eval.attacks: clean, pgd20).

Writes <run>/finetune/<mode>/{classifier.pt,results.json,metrics.jsonl} and
<run>/finetune/results.{json,md}; running the same command again resumes an unfinished mode.

  rcs finetune --checkpoint runs/x/checkpoint.pt --mode all
  rcs finetune --checkpoint runs/x/checkpoint.pt --dataset cifar100 --set data.root=/data/c100
  rcs finetune --checkpoint runs/x/checkpoint.pt --mode aff --set finetune.aff.epochs=25
  rcs finetune --checkpoint runs/x/checkpoint.pt --label-fraction 0.01   # 1 % of the labels
"""

from __future__ import annotations

import argparse

from rcs.cli.common import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="pretraining checkpoint (.pt)")
    p.add_argument("--dataset", default=None,
                   help="downstream dataset name (sets data.name), e.g. cifar10, cifar100, stl10; "
                        "default: the pretraining dataset")
    p.add_argument("--mode", default=None, choices=["slf", "alf", "aff", "all"],
                   help="fine-tuning mode; 'all' runs SLF, ALF and AFF, each with its own "
                        "settings (default: finetune.modes, i.e. slf)")
    p.add_argument("--attacks", default=None,
                   help="evaluations after each mode, comma-separated from clean, pgd20, "
                        "autoattack, corruptions (default: eval.attacks); 'none' skips them")
    p.add_argument("--label-fraction", type=float, default=None, metavar="F",
                   help="fine-tune with a class-balanced, seeded fraction of the labelled "
                        "training images, e.g. 0.01 or 0.1 (sets finetune.label_fraction; output "
                        "goes to <run>/finetune-labels<F>)")
    p.add_argument("--resume", default="auto", choices=["auto", "none"],
                   help="auto: continue an unfinished mode from its state.pt; none: start over")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rcs.cli.common import print_table
    from rcs.finetune import (
        MODES,
        default_out,
        finetune_config,
        load_pretrained,
        run_finetune,
    )

    pre = load_pretrained(args.checkpoint)
    overrides = list(args.overrides or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.label_fraction is not None:
        overrides.append(f"finetune.label_fraction={args.label_fraction}")
    cfg = finetune_config(pre, args.config, overrides, args.dataset)
    modes = list(MODES) if args.mode == "all" else ([args.mode] if args.mode
                                                     else list(cfg.finetune.modes))
    attacks = None
    if args.attacks is not None:
        attacks = [] if args.attacks.strip() == "none" else [
            a.strip() for a in args.attacks.split(",") if a.strip()]
        cfg.eval.attacks = attacks
        cfg.eval.validate()
    out = Path(args.out) if args.out else default_out(pre, cfg)
    print(f"[finetune] {args.checkpoint} ({pre.method}) -> {out}")
    if not pre.complete:
        print("[finetune] warning: the pretraining run has not finished; fine-tuning its last "
              "checkpoint")
    from rcs.utils.signals import TrainingInterrupted

    try:
        results = run_finetune(pre, cfg, modes, out, attacks, resume=args.resume == "auto")
    except TrainingInterrupted as e:
        print(f"rcs finetune: stopped by signal {e.signum}; the fine-tuning state is saved in "
              f"{e.checkpoint}. Run the same command again to resume.", flush=True)
        return 128 + e.signum
    rows = []
    for mode, r in results.items():
        h = r.get("headline", {})
        rows.append({"mode": mode, "epochs": r["settings"]["epochs"], "lr": r["settings"]["lr"],
                     **{k: "-" if h.get(v) is None else h[v] for k, v in (
                         ("SA", "SA"), ("RA_pgd20", "RA_pgd20"), ("RA_AA", "RA_autoattack"),
                         ("CA", "CA"))},
                     "seconds": r["finetune_seconds"]})
    print()
    print_table(rows)
    print(f"\n[finetune] results in {out}/results.json and results.md; classifiers in "
          f"{out}/<mode>/classifier.pt")
    return 0
