"""Look at a coreset file: size, metadata, class histogram, overlap with another coreset.

  rcs coreset show runs/x/coresets/epoch_0101.npz
  rcs coreset show coreset.npz --against random.npz -c configs/cifar10_acl_rcs.yaml
"""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("show",), help="show: print what the coreset holds")
    p.add_argument("file", help="coreset .npz (its .json beside it)")
    p.add_argument("--against", default=None, metavar="FILE",
                   help="another coreset of the same dataset: print the overlap")
    p.add_argument("--config", "-c", default=None,
                   help="the run config whose dataset gives the labels of the class histogram")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key (repeatable)")


def overlap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Shared indices of two coresets, and that count over each size and over the union."""
    shared = len(np.intersect1d(a, b))
    return {"shared": shared, "of_this": shared / max(1, len(a)),
            "of_other": shared / max(1, len(b)), "jaccard": shared / max(1, len(np.union1d(a, b)))}


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import print_table
    from rcs.selection import Coreset

    cs = Coreset.load(args.file)
    meta = cs.meta
    print(f"{args.file}: {len(cs)} images, selector {meta.get('method', '?')}, fraction "
          f"{meta.get('fraction', '?')}, epoch {meta.get('epoch', '?')}, seed "
          f"{meta.get('seed', '?')}, dataset length {meta.get('dataset_len', '?')}")
    timings = meta.get("timings") or {}
    if timings:
        print("timings: " + ", ".join(f"{k} {float(v):.2f} s" for k, v in timings.items()))
    if args.config:
        from rcs.config import load_config
        from rcs.data import build_dataset

        cfg = load_config(args.config, args.overrides)
        ds = build_dataset(cfg.data)
        cs = Coreset.load(args.file, dataset_len=len(ds), fingerprint=ds.fingerprint())
        if ds.labels is not None:
            counts = np.bincount(np.asarray(ds.labels)[cs.indices],
                                 minlength=int(np.max(ds.labels)) + 1)
            names = getattr(ds, "label_names", None) or [str(c) for c in range(len(counts))]
            print_table([{"class": names[c], "images": int(n), "share": n / len(cs)}
                         for c, n in enumerate(counts)])
    if args.against:
        other = Coreset.load(args.against)
        o = overlap(cs.indices, other.indices)
        print(f"overlap with {args.against} ({len(other)} images): {o['shared']} shared, "
              f"{o['of_this']:.1%} of this, {o['of_other']:.1%} of the other, Jaccard "
              f"{o['jaccard']:.3f}")
    return 0
