"""Run the whole rcs pipeline on a small built-in default, on CPU in a few minutes.

Synthetic images (procedural, 10 classes), a tiny dual-BN ResNet, ACL pretraining with a
full-data warm-up then an RCS coreset re-selected every epoch, compared with a random coreset
of the same size. Each encoder is then fine-tuned with SLF (linear head on the frozen 'pgd'
encoder) and evaluated (clean accuracy and PGD-20 robust accuracy on the test split), and
`rcs report` collects both runs into a table and plots. Every code path is the real one; only
the sizes (and the SLF schedule) are small.

  rcs demo                      # writes runs/demo/{rcs,random}/... and runs/demo/report/
  rcs demo --epochs 6 --fraction 0.3 --set data.synthetic_size=1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_OVERRIDES = [
    "name=demo", "data.name=synthetic", "data.synthetic_size=512", "data.val_fraction=0.05",
    "model.arch=resnet18", "model.width=8", "model.blocks=[1,1]", "model.head_dim=32",
    "train.method=acl", "train.batch_size=64", "train.lr=0.5", "train.lr_warmup_epochs=1",
    "train.attack.steps=2", "train.log_every=2", "train.channels_last=false",
    "selection.warmup_epochs=1", "selection.every=1", "selection.rounds=4",
    "selection.val_attack_steps=1", "selection.candidate_batch=64", "selection.sketch_dim=256",
]
DEMO_FINETUNE = [  # SLF with a short schedule (the published one is 25 epochs, lr 0.01, bs 512)
    "finetune.slf.batch_size=128", "finetune.slf.lr=0.1", "eval.batch_size=128",
]


TIME_NOTE = ("pretrain_s = wall time of training + coreset selection (the definition `rcs "
             "report` uses); of_which_select_s is the selection part.")


def caveat(test_n: int) -> str:
    """What a test set of ``test_n`` images can and cannot show."""
    return (f"test set: {test_n} synthetic images, so one image is {100 / max(test_n, 1):.2g} "
            "accuracy points. A demo this small cannot show accuracy or speed differences "
            "between selectors: it checks that the pipeline runs. For a comparison use "
            "`rcs compare` on real data (docs/results/).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder of the demo runs")
    p.add_argument("--epochs", type=int, default=4, help="pretraining epochs (default 4)")
    p.add_argument("--fraction", type=float, default=0.2, help="coreset fraction (default 0.2)")
    p.add_argument("--selectors", default="rcs,random",
                   help="comma-separated selectors to compare (default rcs,random)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="extra config overrides (see `rcs config keys`)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--finetune-epochs", type=int, default=15,
                   help="SLF epochs after pretraining (default 15; 0 skips fine-tuning, "
                        "evaluation and the report)")


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import print_table
    from rcs.config import load_config
    from rcs.finetune import finetune_config, load_pretrained, run_finetune
    from rcs.report import make_report
    from rcs.selection.base import SELECTORS, load_selectors
    from rcs.train.trainer import Trainer
    from rcs.utils.serialize import write_json

    load_selectors()
    rows, runs = [], []
    for name in [s.strip() for s in args.selectors.split(",") if s.strip()]:
        if name not in SELECTORS:
            print(f"[demo] selector '{name}' is not available in this version; skipped")
            continue
        out = Path(args.out) / name
        cfg = load_config(None, DEMO_OVERRIDES + [
            f"out_dir={out}", f"device={args.device}", f"train.epochs={args.epochs}",
            f"selection.method={name}", f"selection.fraction={args.fraction}"] + args.overrides)
        print(f"[demo] pretraining ACL with the '{name}' selector -> {out}")
        summary = Trainer(cfg, resume="none").fit()
        row = {"selector": name, "fraction": args.fraction, "epochs": args.epochs,
               "selections": summary["selections"],
               # one definition everywhere (rcs report too): pretraining = training + selection
               "pretrain_s": summary["train_seconds"] + summary["select_seconds"],
               "of_which_select_s": summary["select_seconds"],
               "final_loss": summary["final_loss"]}
        if args.finetune_epochs > 0:
            n = args.finetune_epochs
            pre = load_pretrained(out / "checkpoint.pt")
            ft_cfg = finetune_config(pre, overrides=DEMO_FINETUNE + [
                f"finetune.slf.epochs={n}", f"finetune.slf.milestones=[{max(1, (3 * n) // 4)}]"])
            print(f"[demo] SLF fine-tuning ({n} epochs) and clean / PGD-20 evaluation")
            res = run_finetune(pre, ft_cfg, ["slf"], out / "finetune", ["clean", "pgd20"],
                               resume=False)
            h = res["slf"]["headline"]
            row.update({"SLF_SA": h["SA"], "SLF_RA_pgd20": h["RA_pgd20"],
                        "test_n": res["slf"]["eval"]["clean"]["n"]})
        rows.append(row)
        runs.append(out)
    print("\n[demo] results")
    table = print_table(rows)
    notes = [TIME_NOTE]
    test_n = {r["test_n"] for r in rows if "test_n" in r}
    if test_n:
        notes.append(caveat(min(test_n)))
    for note in notes:
        print(f"[demo] {note}")
    table += "\n\n" + "\n\n".join(notes)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "results.json", rows)
    (Path(args.out) / "results.md").write_text(table + "\n")
    print(f"[demo] results written to {args.out}/results.json and results.md")
    if args.finetune_epochs > 0 and runs:
        report = make_report(runs, Path(args.out) / "report")
        print(f"[demo] report (table + plots): {report.files['markdown']}")
    return 0
