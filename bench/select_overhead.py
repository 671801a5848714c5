"""Selection overhead: one RCS selection (k = 0.2) / one full-data PGD-5 ACL epoch, same model,
data and machine, measured interleaved (issue 12).

A trainer trains full-data ACL epochs with PGD-5 (the published training attack); between
epochs, the RCS selector (the config's defaults unless ``--set selection.*=...``) selects from
the same model, data and augmentation. ``--repeats`` epochs and selections alternate, so load
changes on a shared machine hit both sides; the figures are medians with the spread (min-max)
of each. Prints the machine, threads and load, each selection phase's median time and, as its
last line, ``select_overhead_ratio: X`` (median selection / median epoch; target <= 0.10);
``--json PATH`` also writes the figures.

Default model: the published full-width ResNet-18 (dual BN, 3-layer 512-d head) on 960 images
of the real CIFAR-10 subset, batch 64 (about 3 min an epoch on a quiet 2-core CPU). ``--quick``:
width 16, one block per stage, for a quick look.

  python bench/select_overhead.py                      # full width, 3 + 3 interleaved
  python bench/select_overhead.py --quick
  python bench/select_overhead.py --device cuda --limit 0 --batch-size 512
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar10_subset.npz"

from rcs.utils.machine import describe, machine  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _fmt(v: list[float]) -> str:
    return f"{np.median(v):.2f} s [{min(v):.2f}-{max(v):.2f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--npz", default=str(DEFAULT_NPZ), help="npz with x_train (uint8 NHWC)")
    p.add_argument("--limit", type=int, default=960, help="training images (0 = all 5,551)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--blocks", default="[2,2,2,2]")
    p.add_argument("--head-dim", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="PGD steps of ACL training")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3, help="epochs and selections, interleaved")
    p.add_argument("--quick", action="store_true", help="width 16, blocks [1,1,1,1]")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="config overrides, e.g. selection.train_attack_steps=5")
    p.add_argument("--also", action="append", default=[], metavar="K=V[,K=V]",
                   help="another selector setting measured in the same repeats (repeatable), "
                        "e.g. train_attack_steps=0")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.blocks, args.head_dim = 16, "[1,1,1,1]", 64

    from rcs.config import load_config
    from rcs.selection import RCSSelector
    from rcs.selection.base import SelectionContext, build_selector
    from rcs.train.trainer import Trainer
    from rcs.utils.metrics import read_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"out_dir={tmp}", "data.name=npz", f"data.root={args.npz}", f"data.limit={args.limit}",
            "data.val_fraction=0.01", "model.arch=resnet18", f"model.width={args.width}",
            f"model.blocks={args.blocks}", f"model.head_dim={args.head_dim}",
            f"train.epochs={args.repeats}", f"train.batch_size={args.batch_size}",
            f"train.attack.steps={args.steps}", "train.lr=0.5", "selection.method=full",
            f"selection.fraction={args.fraction}", f"device={args.device}",
            f"train.channels_last={args.device != 'cpu'}", "train.log_every=1000000",
            "train.checkpoint_every=1000", *args.overrides])
        trainer = Trainer(cfg, resume="none")
        cfg.selection.method = "rcs"
        variants = {"defaults": build_selector("rcs", cfg)}
        for spec in args.also:
            kv = dict(item.split("=", 1) for item in spec.split(","))
            variants[spec] = RCSSelector(cfg, **{k: yaml.safe_load(v) for k, v in kv.items()})
        print(f"machine: {describe(machine())}, device {trainer.device}", flush=True)
        s = cfg.selection
        print(f"model resnet18 width {args.width} blocks {args.blocks}; "
              f"{len(trainer.candidates)} candidates, |U| = {len(trainer.val)}, batch "
              f"{args.batch_size}, training PGD-{args.steps}; selection k={args.fraction}, "
              f"gradients={s.gradients}, rounds={s.rounds}, pool={s.pool}, "
              f"candidate attack {s.train_attack_steps} step(s), U attack {s.val_attack_steps} "
              f"step(s), re-attack every {s.val_reattack_every or 'never'}", flush=True)
        epochs: list[float] = []
        selections: dict[str, list[float]] = {k: [] for k in variants}
        phases: dict[str, dict[str, list[float]]] = {k: {} for k in variants}
        for r in range(args.repeats):
            trainer.fit(until_epoch=r + 1)
            rec = [x for x in read_jsonl(Path(tmp) / "metrics.jsonl") if x["event"] == "epoch"]
            epochs.append(rec[-1]["seconds"])
            ctx = SelectionContext(dataset=trainer.dataset, candidates=trainer.candidates,
                                   val=trainer.val, fraction=args.fraction, seed=cfg.seed,
                                   model=trainer.model, augment=trainer.augment,
                                   device=trainer.device, cfg=cfg, epoch=r + 2)
            for name, selector in variants.items():
                _sync(trainer.device)
                t0 = time.perf_counter()
                cs = selector.select(ctx)
                _sync(trainer.device)
                selections[name].append(time.perf_counter() - t0)
                for k, v in cs.meta["timings"].items():
                    phases[name].setdefault(k, []).append(v)
                print(f"repeat {r + 1}: epoch {epochs[-1]:.2f} s, selection [{name}] "
                      f"{selections[name][-1]:.2f} s ({len(cs)} picked)", flush=True)
    print(f"full-data PGD-{args.steps} ACL epoch: {_fmt(epochs)}")
    for name in variants:
        print(f"RCS selection [{name}]: {_fmt(selections[name])}; ratio "
              f"{np.median(selections[name]) / np.median(epochs):.3f}")
        for k, v in phases[name].items():
            print(f"  {k:>12s}: {_fmt(v)}")
    print(f"peak RSS: {_peak_rss_gb():.2f} GB; load now {os.getloadavg()[0]:.2f}")
    if args.json:
        med = {k: float(np.median(v)) for k, v in selections.items()}
        Path(args.json).write_text(json.dumps({
            "epoch_seconds": float(np.median(epochs)), "epochs_all": epochs,
            "selection_seconds": med["defaults"], "selections_all": selections,
            "select_overhead_ratio": med["defaults"] / float(np.median(epochs)),
            "ratios": {k: v / float(np.median(epochs)) for k, v in med.items()},
            "phases": {k: {p: float(np.median(v)) for p, v in ph.items()}
                       for k, ph in phases.items()},
            "settings": vars(args)}, indent=2))
    print(f"select_overhead_ratio: {np.median(selections['defaults']) / np.median(epochs):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
