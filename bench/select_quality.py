"""Selection quality: the TRUE one-step RD benefit of each selector's coreset, against exact
greedy (issue 12).

From a model warmed up on the real CIFAR-10 subset, over a pool of a few hundred candidates
and a validation set U, every variant selects k of the pool. Each coreset S is then judged by
what RCS's objective says it should do, measured rather than predicted: the head takes the
exact one-step update ``φ' = φ - η ∇φ L(S)`` (L(S) the mean per-sample pretraining loss of S
on the attacked features every variant saw), U is attacked afresh against ``φ'`` and the RD is
measured. The step is the one RCS's greedy takes for S: η per candidate-batch's worth of picks,
``φ' = φ - η (|S| / B) ∇φ L(S)`` (B = ``--candidate-batch``), so one-pick-at-a-time greedy ends
exactly at ``φ'``. The benefit of S is ``RD(U; φ) - RD(U; φ')`` (> 0: RD went down), averaged
over ``--seeds`` (each seed: its own candidate augmentations and attacks, U attack starts).

- ``exact-greedy``: exact gains, one pick per round, U re-attacked after every pick (the
  paper's greedy without the sketch, the published bugs or any shortcut);
- the rcs defaults, and every cheaper setting offered (sketched gains, rounds, no re-attack
  of U, candidate pools, no candidate attack), each with its selection time;
- ``random``: the mean over ``--random-draws`` draws.

Prints a table (also ``--out`` as JSON + markdown) and, last, ``benefit_ratio: X`` = (benefit
of the rcs defaults) / (benefit of exact greedy); the goal is >= 0.95.

    python bench/select_quality.py                  # ~5 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rcs.utils.machine import describe, machine  # noqa: E402
from rcs.utils.tables import markdown_table  # noqa: E402

CONFIG = ROOT / "configs" / "tiny" / "cifar10_subset_compare.yaml"

VARIANTS: dict[str, dict[str, Any]] = {
    "exact-greedy": {"gradients": "exact", "rounds": 10**9, "val_reattack_every": 1},
    "defaults": {},
    "exact, 1 round (top-k at φ)": {"gradients": "exact", "rounds": 1},
    "exact, 5 rounds": {"gradients": "exact", "rounds": 5},
    "exact, 20 rounds": {"gradients": "exact", "rounds": 20},
    "exact, 20 rounds, U re-attacked every round":
        {"gradients": "exact", "rounds": 20, "val_reattack_every": 1},
    "exact, 1 round, no candidate attack":
        {"gradients": "exact", "rounds": 1, "train_attack_steps": 0},
    "exact, 20 rounds, no candidate attack":
        {"gradients": "exact", "rounds": 20, "train_attack_steps": 0},
    "exact, 20 rounds, pool 0.5": {"gradients": "exact", "rounds": 20, "pool": 0.5},
    "sketch 1024, 20 rounds, U re-attacked every round (previous defaults)":
        {"gradients": "sketch", "sketch_dim": 1024, "rounds": 20, "val_reattack_every": 1},
    "published: whole minibatches, sketch, U re-attacked":
        {"gradients": "sketch", "granularity": "batch", "rounds": 10**9,
         "val_reattack_every": 1},
}


def warm_model(args: argparse.Namespace) -> Any:
    """A trainer whose model is warmed up (cached checkpoint under --work)."""
    from rcs.config import load_config
    from rcs.train.trainer import Trainer

    wdir = Path(args.work) / f"warmup-e{args.warmup_epochs}"
    cfg = load_config(args.config, [f"out_dir={wdir}", "selection.method=full",
                                    f"train.epochs={args.warmup_epochs}",
                                    f"data.limit={args.limit}", *args.set])
    trainer = Trainer(cfg, resume="auto")
    if trainer.progress.epoch <= args.warmup_epochs:
        print(f"[quality] warming up {args.warmup_epochs} epoch(s) -> {wdir}", flush=True)
        trainer.fit()
    return trainer


def measure_rd(net: Any, head: Any, images: torch.Tensor, steps: int, distance: str,
               eps: float, seed: int) -> float:
    """RD(U) at ``head.params`` after a fresh PGD attack against that head."""
    from rcs.selection.validation import RDValidation

    rdv = RDValidation(net.features, head, images, distance, net.bn, eps, steps, None,
                       512, (seed, 99))
    return rdv.grad()[1]


def benefit(sel: Any, net: Any, feats: torch.Tensor, labels: torch.Tensor | None,
            position: dict[int, int], indices: np.ndarray, images: torch.Tensor,
            rd0: float, args: argparse.Namespace, seed: int) -> float:
    """``RD(U; φ) - RD(U; φ - η (|S|/B) ∇L(S))`` with the exact gradient of S's mean loss."""
    from rcs.selection.per_sample import HeadFn, mean_grad

    bsz, obj = sel.scfg.candidate_batch, sel._objective(net)
    head = HeadFn(net.head, sel.scfg.scope)
    pos = np.sort(np.array([position[int(i)] for i in indices]))
    groups = []
    for c in np.unique(pos // bsz):
        lo, hi = int(c) * bsz, min(len(feats), (int(c) + 1) * bsz)
        groups.append((feats[lo:hi], None if labels is None else labels[lo:hi],
                       torch.from_numpy(pos[pos // bsz == c] - lo)))
    head.step(mean_grad(obj, head, groups), args.eta * len(pos) / bsz)
    return rd0 - measure_rd(net, head, images, args.rd_steps, sel.scfg.rd_distance,
                            sel.eps, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    p.add_argument("--limit", type=int, default=2000, help="training images of the warm-up")
    p.add_argument("--warmup-epochs", type=int, default=3)
    p.add_argument("--pool", type=int, default=400, help="candidates the variants choose from")
    p.add_argument("--val", type=int, default=40,
                   help="validation images U (the last candidates, never in the pool)")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--candidate-batch", type=int, default=64,
                   help="chunk of the gradient pass (negatives) and unit of the batch variant")
    p.add_argument("--eta", type=float, default=0.01, help="step of the judging update")
    p.add_argument("--rd-steps", type=int, default=10, help="PGD steps of the judging RD")
    p.add_argument("--random-draws", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset to run")
    p.add_argument("--work", default="runs/select_quality")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    from rcs.config.schema import SelectionConfig
    from rcs.data import to_float
    from rcs.selection import RCSSelector, SelectionContext
    from rcs.selection.per_sample import HeadFn

    trainer = warm_model(args)
    trainer.model.eval()  # every forward below (judge and selections) on running statistics
    cfg = trainer.cfg
    # the library's selection defaults (not the warm-up config's), on this pool
    cfg.selection = SelectionConfig(method="rcs", candidate_batch=args.candidate_batch,
                                    val_attack_steps=3)
    cand, val = trainer.candidates[:args.pool], trainer.candidates[-args.val:]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        ctx = SelectionContext(trainer.dataset, cand, val, args.fraction, seed=seed,
                               model=trainer.model, augment=trainer.augment, device="cpu",
                               cfg=cfg, epoch=1)
        ref = RCSSelector(cfg)
        order, feats, lab = ref.candidate_features(ctx)
        labels = None if lab is None else torch.from_numpy(lab)
        position = {int(i): j for j, i in enumerate(order)}
        net = ref._net(trainer.model)
        images = to_float(trainer.dataset.get_batch(np.asarray(val))[0])
        rd0 = measure_rd(net, HeadFn(net.head, cfg.selection.scope), images, args.rd_steps,
                         cfg.selection.rd_distance, ref.eps, seed)
        print(f"[quality] seed {seed}: pool {len(cand)}, U {len(val)}, k={args.fraction}: "
              f"RD(U) = {rd0:.5f} under PGD-{args.rd_steps}", flush=True)
        for name in args.variants:
            sel = RCSSelector(cfg, **VARIANTS[name])
            t0 = time.perf_counter()
            cs = sel.select(ctx)
            secs = time.perf_counter() - t0
            b = benefit(sel, net, feats, labels, position, cs.indices, images, rd0, args, seed)
            t = cs.meta["timings"]
            by_variant.setdefault(name, []).append({
                "benefit": b, "seconds": secs, "size": len(cs),
                "phases": {k: t.get(k) for k in ("gradients", "validation", "greedy")},
                "val_attacks": cs.meta["val_attacks"]})
            print(f"[quality] seed {seed} {name}: benefit {b:+.6f} in {secs:.1f} s", flush=True)
        rng = np.random.default_rng(seed)
        pool, n_sel = ctx.selectable()
        draws = [benefit(ref, net, feats, labels, position,
                         rng.choice(pool, n_sel, replace=False), images, rd0, args, seed)
                 for _ in range(args.random_draws)]
        by_variant.setdefault("random", []).append({"benefit": float(np.mean(draws)),
                                                    "seconds": 0.0, "size": n_sel})
    rows = []
    for name, runs in by_variant.items():
        ph = [r.get("phases") for r in runs if r.get("phases")]
        rows.append({
            "variant": name, "settings": VARIANTS.get(name, {}), "size": runs[0]["size"],
            "benefit": float(np.mean([r["benefit"] for r in runs])),
            "per_seed": [r["benefit"] for r in runs],
            "seconds": float(np.median([r["seconds"] for r in runs])),
            "phases": {k: float(np.median([p[k] for p in ph])) for k in ph[0]} if ph else {},
            "val_attacks": runs[0].get("val_attacks", "-")})
    exact = next((r["benefit"] for r in rows if r["variant"] == "exact-greedy"), None)
    body = []
    for r in rows:
        share = f"{r['benefit'] / exact:.3f}" if exact else "-"
        ph = r.get("phases") or {}
        phases = " / ".join(f"{ph[k]:.1f}" if ph.get(k) is not None else "-"
                            for k in ("gradients", "validation", "greedy")) if ph else "-"
        seeds = " ".join(f"{b:+.4f}" for b in r["per_seed"])
        body.append([r["variant"], r["size"], f"{r['benefit']:+.6f}", seeds, share,
                     f"{r['seconds']:.1f}", phases, r["val_attacks"]])
    table = markdown_table(["variant", "|S|", "true RD decrease (mean over seeds)", "per seed",
                            "share of exact greedy", "select s (median)",
                            "gradients / validation / greedy s", "U attacks"], body)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        head = (f"# Selection quality (true one-step RD benefit)\n\nCommand: `python "
                f"bench/select_quality.py {' '.join(argv or sys.argv[1:])}`  \nMachine: "
                f"{describe(machine())}; {time.strftime('%Y-%m-%d')}. "
                f"Pool {len(cand)}, |U| = {len(val)}, k = {args.fraction}, eta = {args.eta}, seeds "
                f"{args.seeds}; random = mean of {args.random_draws} draws per seed.\n\n")
        (out / "select_quality.md").write_text(head + table + "\n")
        (out / "select_quality.json").write_text(json.dumps(
            {"args": vars(args), "rows": rows}, indent=1, default=str))
    default = next((r["benefit"] for r in rows if r["variant"] == "defaults"), None)
    if exact and default is not None:
        print(f"benefit_ratio: {default / exact:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
