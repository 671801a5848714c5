"""Paired coreset-quality study: does an RCS coreset train a more robust encoder than a random
one of the same size (issue 18)?

Design (every arm sees the same thing but its coreset):

1. One full-data warm-up of ``--warmup-epochs`` epochs per fraction (seed ``--warmup-seed``),
   trained once and cached under ``--work``.
2. For each seed s and each arm: continue from the warm-up checkpoint with ``seed=s`` (batch
   order, augmentations, attacks, the validation split U and the random draw all follow s) for
   ``--coreset-epochs`` epochs, a new coreset every ``--every`` epochs, chosen by the arm's
   selector; the lr schedule is the config's and is the same for every arm.
3. Evaluation on ``--heldout`` test images the selection never saw: held-out RD, the quantity
   RCS optimises, under a stronger attack than the selector's (PGD ``--rd-steps`` at 8/255,
   alpha 2/255, uniform start, maximising the same KL(softmax g(f_nat(x)) || softmax
   g(f_pgd(x'))), written here from scratch rather than reusing the selector's code); the same
   RD on the unit-normalised head outputs divided by the temperature (a check that a change of
   RD is not only a change of the output scale); RD on the arm's own U; the largest class share
   of the last coreset; with ``--slf``, SLF then clean and PGD-20 accuracy.

Seeds are the outer loop and arms the inner one, so arms are interleaved in time. Paired
differences (arm - baseline) are reported with a 95% t-interval and a two-sided sign test.
Output: ``results.json`` (every row) and ``results.md`` (the table) in ``--out``; the last two
lines printed are ``heldout_rd_delta`` (first arm - baseline, negative = RCS better) and
``rd_wins`` (seeds where the first arm's held-out RD is lower).

Arms: ``NAME`` or ``NAME:key=value,key=value`` with dotted config overrides; ``rcs`` and
``random`` alone mean ``selection.method=rcs`` / ``random`` with the config's settings, e.g.
``--arms rcs random rcs-batch:selection.method=rcs,selection.granularity=batch``.

    python bench/coreset_quality.py --quick            # ~3 min on a 2-core CPU
    python bench/coreset_quality.py --seeds 1-10       # the study (docs/results/coreset_quality)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rcs.utils.machine import describe  # noqa: E402
from rcs.utils.machine import machine as machine_info  # noqa: E402
from rcs.utils.tables import markdown_table  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "tiny" / "cifar10_subset_compare.yaml"


# ----------------------------------------------------------------------------- arguments
def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


SELECTORS = ("rcs", "random", "full", "kcenter", "gradnorm", "craig")


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``NAME[:k=v,...]``; without ``selection.method=`` the selector is NAME's first part
    (``rcs-batch:selection.granularity=batch`` is an RCS arm)."""
    name, _, rest = text.partition(":")
    sets = [s for s in rest.split(",") if s]
    if not any(s.startswith("selection.method=") for s in sets):
        base = name.split("-")[0]
        if base not in SELECTORS:
            raise SystemExit(f"arm {text!r}: name it after a selector ({', '.join(SELECTORS)}) "
                             f"or add selection.method=..., e.g. rcs-batch:"
                             f"selection.granularity=batch")
        sets.insert(0, f"selection.method={base}")
    return name, sets


def args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="run config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every arm and the warm-up (repeatable)")
    p.add_argument("--arms", nargs="+", default=["rcs", "random"],
                   help="arms; the LAST one is the baseline of the paired differences")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    p.add_argument("--seeds", default="1-10", help="e.g. 1-10 or 1,3,5")
    p.add_argument("--warmup-epochs", type=int, default=10)
    p.add_argument("--warmup-seed", type=int, default=0)
    p.add_argument("--coreset-epochs", type=int, default=4)
    p.add_argument("--every", type=int, default=2, help="epochs between selections")
    p.add_argument("--heldout", type=int, default=500, help="test images for held-out RD")
    p.add_argument("--rd-steps", type=int, default=10, help="PGD steps of the held-out RD")
    p.add_argument("--slf", action="store_true", help="also SLF + clean / PGD-20 accuracy")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, 2 warm-up epochs, 2 coreset epochs, 200 held-out images")
    p.add_argument("--work", default="runs/coreset_quality", help="runs and warm-ups")
    p.add_argument("--out", default="", help="results folder (default: <work>/results)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's choice)")
    return p


# ----------------------------------------------------------------------------- training
def make_config(args: argparse.Namespace, fraction: float, seed: int, arm_sets: list[str],
                out_dir: Path) -> Any:
    from rcs.config import load_config

    w = args.warmup_epochs
    sets = [f"train.epochs={w + args.coreset_epochs}", f"selection.warmup_epochs={w}",
            f"selection.every={args.every}", f"selection.fraction={fraction}",
            f"seed={seed}", f"out_dir={out_dir}", "train.checkpoint_every=1000",
            *args.set, *arm_sets]
    return load_config(args.config, sets)


def warmup(args: argparse.Namespace, fraction: float) -> Path:
    """The shared warm-up checkpoint (cached; the warm-up does not depend on the selector)."""
    from rcs.train.trainer import Trainer

    wdir = Path(args.work) / f"warmup-k{fraction:g}-e{args.warmup_epochs}-s{args.warmup_seed}"
    ckpt = wdir / "checkpoint.pt"
    key = json.dumps([args.config, args.set, args.warmup_epochs, args.coreset_epochs,
                      args.every, fraction])
    stamp = wdir / "warmup.json"
    if ckpt.is_file() and stamp.is_file() and json.loads(stamp.read_text())["key"] == key:
        return ckpt
    cfg = make_config(args, fraction, args.warmup_seed, ["selection.method=random"], wdir)
    print(f"[quality] warm-up k={fraction:g}: {args.warmup_epochs} full-data epochs -> {wdir}",
          flush=True)
    Trainer(cfg, resume="none").fit(until_epoch=args.warmup_epochs)
    stamp.write_text(json.dumps({"key": key}))
    return ckpt


def train_arm(args: argparse.Namespace, fraction: float, seed: int, name: str,
              sets: list[str], warm: Path) -> tuple[Any, Any, float]:
    """Continue from the warm-up with this arm's selector; returns (trainer, cfg, seconds)."""
    from rcs.train.trainer import Trainer

    run = Path(args.work) / "runs" / f"k{fraction:g}" / f"{name}-s{seed}"
    shutil.rmtree(run, ignore_errors=True)
    cfg = make_config(args, fraction, seed, sets, run)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, resume="none")
    trainer.init_from(warm, continue_schedule=True)
    trainer.fit()
    return trainer, cfg, time.perf_counter() - t0


# ----------------------------------------------------------------------------- measurement
def _kl_rows(z_nat: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """KL(softmax z_nat || softmax z_adv) per row, written out (independent of rcs.losses)."""
    p = torch.softmax(z_nat.double(), dim=1)
    return (p * (torch.log(p) - torch.log_softmax(z_adv.double(), dim=1))).sum(dim=1)


def heldout_rd(model: Any, images: torch.Tensor, steps: int, temperature: float,
               eps: float = 8 / 255, alpha: float = 2 / 255, seed: int = 0,
               batch: int = 250) -> dict[str, float]:
    """RD = mean KL(softmax g(f_normal(x)) || softmax g(f_pgd(x'))), x' = PGD maximising it;
    also on unit-normalised outputs / temperature, and the mean head-output norms."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    rd, rd_unit, norm_nat, norm_adv = [], [], [], []
    for s in range(0, len(images), batch):
        x = images[s:s + batch]
        with torch.no_grad():
            z_nat = model(x, "normal")
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = _kl_rows(z_nat, model((x + delta).clamp(0, 1), "pgd")).sum()
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * g.sign()).clamp(-eps, eps)
        with torch.no_grad():
            z_adv = model((x + delta).clamp(0, 1), "pgd")
            rd.append(_kl_rows(z_nat, z_adv))
            u_nat = z_nat / z_nat.norm(dim=1, keepdim=True) / temperature
            u_adv = z_adv / z_adv.norm(dim=1, keepdim=True) / temperature
            rd_unit.append(_kl_rows(u_nat, u_adv))
            norm_nat.append(z_nat.norm(dim=1))
            norm_adv.append(z_adv.norm(dim=1))
    return {"rd": float(torch.cat(rd).mean()), "rd_unit": float(torch.cat(rd_unit).mean()),
            "norm_nat": float(torch.cat(norm_nat).mean()),
            "norm_adv": float(torch.cat(norm_adv).mean())}


def slf_accuracy(run_dir: Path, log: Any) -> dict[str, float]:
    from rcs.finetune import finetune_config, load_pretrained, run_finetune

    pre = load_pretrained(run_dir / "checkpoint.pt")
    res = run_finetune(pre, finetune_config(pre), ["slf"], run_dir / "finetune", ["clean",
                       "pgd20"], resume=False, log=log)
    h = res["slf"]["headline"]
    return {"SA": h["SA"], "RA": h["RA_pgd20"]}


def measure(args: argparse.Namespace, trainer: Any, cfg: Any, test_x: torch.Tensor,
            run_dir: Path, warm_buffers: dict[str, torch.Tensor]) -> dict[str, Any]:
    from rcs.data import to_float

    model = trainer.model
    temp = cfg.train.temperature
    row: dict[str, Any] = {}
    row |= {f"heldout_{k}": v for k, v in
            heldout_rd(model, test_x, args.rd_steps, temp, seed=1234).items()}
    # the same weights with the warm-up's BN running statistics: how much of the change is BN
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for name, buf in probe.named_buffers():
            buf.copy_(warm_buffers[name])
    row["heldout_rd_warmup_bn"] = heldout_rd(probe, test_x, args.rd_steps, temp, seed=1234)["rd"]
    u_x = to_float(trainer.dataset.get_batch(np.asarray(trainer.val))[0])
    row["val_rd"] = heldout_rd(model, u_x, args.rd_steps, temp, seed=4321)["rd"]
    labels = getattr(trainer.dataset, "labels", None)
    if labels is not None and trainer.coreset is not None:
        counts = np.bincount(np.asarray(labels)[trainer.coreset.indices])
        row["max_class_share"] = float(counts.max() / counts.sum())
    if trainer.coreset is not None:
        row["coreset_size"] = len(trainer.coreset)
    if args.slf:
        row |= slf_accuracy(run_dir, log=lambda *_: None)
    return row


# ----------------------------------------------------------------------------- statistics
def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of a - b, its 95% t-interval, wins (a < b) and a two-sided sign test."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    mean = float(d.mean())
    half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    wins, losses = int((d < 0).sum()), int((d > 0).sum())
    p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "wins": wins, "n": n,
            "sign_p": p}


def _ms(v: list[float], digits: int = 3) -> str:
    if not v:
        return "-"
    s = np.std(v, ddof=1) if len(v) > 1 else 0.0
    return f"{np.mean(v):.{digits}f} ± {s:.{digits}f}"


def table(rows: list[dict[str, Any]], arms: list[str], fractions: list[float],
          reference: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    cols = [("heldout_rd", "held-out RD", 3), ("heldout_rd_warmup_bn", "RD, warm-up BN stats", 3),
            ("heldout_rd_unit", "RD (unit outputs)", 3),
            ("val_rd", "RD on U", 3), ("heldout_norm_nat", "|g(f(x))|", 2),
            ("max_class_share", "largest class", 3), ("SA", "SA", 2), ("RA", "RA PGD-20", 2),
            ("seconds", "run s", 1)]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    body: list[list[str]] = []
    stats: dict[str, Any] = {}
    base = arms[-1]
    for k in fractions:
        ref = reference.get(f"{k:g}")
        if ref:
            body.append([f"{k:g}", "warm-up only", "-"] + [
                f"{ref[c[0]]:.{c[2]}f}" if c[0] in ref else "-" for c in cols])
        for arm in arms:
            rs = [r for r in rows if r["arm"] == arm and r["fraction"] == k]
            body.append([f"{k:g}", arm, str(len(rs))] + [
                _ms([r[c[0]] for r in rs if c[0] in r], c[2]) for c in cols])
        for arm in arms[:-1]:
            key = f"k{k:g}/{arm}-{base}"
            stats[key] = {}
            for metric in ("heldout_rd", "heldout_rd_warmup_bn", "heldout_rd_unit", "val_rd",
                           "SA", "RA"):
                pa = {r["seed"]: r.get(metric) for r in rows if r["arm"] == arm
                      and r["fraction"] == k}
                pb = {r["seed"]: r.get(metric) for r in rows if r["arm"] == base
                      and r["fraction"] == k}
                seeds = [s for s in pa if pa[s] is not None and pb.get(s) is not None]
                if seeds:
                    stats[key][metric] = paired([pa[s] for s in seeds], [pb[s] for s in seeds])
    diffs = []
    for key, per in stats.items():
        for metric, s in per.items():
            wins = s["wins"] if "rd" in metric else s["n"] - s["wins"]
            diffs.append([key, metric, f"{s['mean']:+.4f}", f"[{s['lo']:+.4f}, {s['hi']:+.4f}]",
                          f"{wins}/{s['n']}", f"{s['sign_p']:.3f}"])
    lines = [markdown_table(["k", "arm", "seeds"] + [c[1] for c in cols], body), "",
             f"Paired differences (arm - {base}; negative RD = better; 95% t-interval; "
             "wins = seeds where the arm is lower / higher for accuracies):", "",
             markdown_table(["k / arm", "metric", "mean diff", "95% CI", "wins", "sign-test p"],
                            diffs)]
    return "\n".join(lines), stats


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = args_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.warmup_epochs, args.coreset_epochs = "1-3", 2, 2
        args.heldout, args.every = 200, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = [parse_arm(a) for a in args.arms]
    names = [a[0] for a in arms]
    seeds = parse_seeds(args.seeds)
    out = Path(args.out or Path(args.work) / "results")
    out.mkdir(parents=True, exist_ok=True)

    from rcs.config import to_dict
    from rcs.data import build_dataset, to_float

    probe = make_config(args, args.fractions[0], 0, [], Path(args.work) / "probe")
    test_cfg = probe.data
    test_cfg.limit = 0
    test = build_dataset(test_cfg, split="test")
    test_x = to_float(test.get_batch(np.arange(min(args.heldout, len(test))))[0])
    machine = machine_info()
    print(f"[quality] {machine}", flush=True)

    rows: list[dict[str, Any]] = []
    reference: dict[str, Any] = {}
    t_start = time.perf_counter()
    for k in args.fractions:
        warm = warmup(args, k)
        from rcs.train.trainer import Trainer

        wt = Trainer(make_config(args, k, args.warmup_seed, ["selection.method=random"],
                                 Path(args.work) / "reference"), resume="none")
        wt.init_from(warm)
        reference[f"{k:g}"] = {f"heldout_{m}": v for m, v in heldout_rd(
            wt.model, test_x, args.rd_steps, probe.train.temperature, seed=1234).items()}
        warm_buffers = {n: b.clone() for n, b in wt.model.named_buffers()}
        for seed in seeds:
            for name, sets in arms:
                trainer, cfg, secs = train_arm(args, k, seed, name, sets, warm)
                row = {"arm": name, "fraction": k, "seed": seed, "seconds": secs,
                       "overrides": sets}
                row |= measure(args, trainer, cfg, test_x, Path(cfg.out_dir), warm_buffers)
                rows.append(row)
                print(f"[quality] k={k:g} seed {seed} {name}: held-out RD "
                      f"{row['heldout_rd']:.4f} (unit {row['heldout_rd_unit']:.4f}), RD on U "
                      f"{row['val_rd']:.4f}, {secs:.1f} s  [{time.perf_counter() - t_start:.0f} s]",
                      flush=True)
                (out / "results.json").write_text(json.dumps(
                    {"args": vars(args), "machine": machine, "rows": rows,
                     "reference": reference, "config": to_dict(probe)}, indent=1,
                    default=str))
    text, stats = table(rows, names, args.fractions, reference)
    header = (f"# Coreset quality: {', '.join(names)} (baseline {names[-1]})\n\n"
              f"Command: `python bench/coreset_quality.py {' '.join(argv or sys.argv[1:])}`  \n"
              f"Machine: {describe(machine)}; date {time.strftime('%Y-%m-%d')}; "
              f"{time.perf_counter() - t_start:.0f} s in all.\n\n")
    (out / "results.md").write_text(header + text + "\n")
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "machine": machine, "rows": rows, "reference": reference,
         "paired": stats, "config": to_dict(probe)}, indent=1, default=str))
    print(text)
    first = stats.get(f"k{args.fractions[0]:g}/{names[0]}-{names[-1]}", {}).get("heldout_rd")
    if first:
        print(f"heldout_rd_delta: {first['mean']:+.4f}")
        print(f"rd_wins: {first['wins']}/{first['n']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
