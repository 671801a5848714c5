"""Compare coreset selectors at an equal budget: pretrain with each (same config, schedule and
seeds), fine-tune (SLF by default), evaluate clean and PGD-20 accuracy, and write a table
(per run and mean ± std over seeds), a JSON record and a plot of robust accuracy against
pretraining time into --out.

  rcs compare -c configs/tiny/cifar10_subset_compare.yaml --selectors rcs,random,kcenter,full \\
      --fractions 0.1,0.2 --seeds 0,1,2 --out runs/compare      # docs/results/ holds its output
  rcs compare -c cfg.yaml --selectors rcs,random --fractions 0.2 --seeds 0 --out o \\
      --set train.epochs=10 --finetune-set finetune.slf.epochs=5 --set eval.limit=500

Re-running the same command reuses finished runs (and resumes an interrupted one). --slurm runs
the runs as a SLURM job array (slurm.* keys of the config) when rcs.launch provides it.
"""

from __future__ import annotations

import argparse
import shlex


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _radii(text: str) -> list[float]:
    """'2/255,4/255' -> [2/255, 4/255] (plain numbers work too)."""
    out = []
    for t in (t.strip() for t in text.split(",")):
        if t:
            num, _, den = t.partition("/")
            out.append(float(num) / float(den or 1))
    return out


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, metavar="YAML",
                   help="pretraining config shared by every run (see configs/)")
    p.add_argument("--selectors", default="rcs,random,full",
                   help="comma-separated selector names (default rcs,random,full); "
                        "`full` runs once per seed")
    p.add_argument("--fractions", type=_floats, default=[0.2], metavar="K1,K2",
                   help="coreset fractions (default 0.2)")
    p.add_argument("--seeds", type=_ints, default=[0], metavar="S1,S2", help="seeds (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="config override applied to every run (repeatable)")
    p.add_argument("--finetune-set", dest="finetune_overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override for the fine-tuning/evaluation config only (repeatable), "
                        "e.g. finetune.slf.epochs=5")
    p.add_argument("--modes", default="slf", help="fine-tuning modes (default slf); the table "
                   "reports the first")
    p.add_argument("--extra-eps", type=_radii, default=[], metavar="E1,E2",
                   help="also report PGD-20 accuracy at these L-inf radii (step eps/4), e.g. "
                        "2/255 when 8/255 leaves short pretraining runs at the floor; added to "
                        "finished runs without retraining")
    p.add_argument("--references", action="store_true",
                   help="also fine-tune and evaluate, per seed, the untrained encoder and the "
                        "encoder after the full-data warm-up only (the floor the selectors are "
                        "read against)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where the run folders go (default OUT/runs)")
    p.add_argument("--no-shared-warmup", dest="share_warmup", action="store_false",
                   help="train the full-data warm-up separately in every run (by default it is "
                        "trained once per fraction and seed and each selector starts from it)")
    p.add_argument("--slurm", action="store_true",
                   help="run the runs as a SLURM job array (slurm.* config keys)")


def command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this comparison (recorded with the results)."""
    parts = ["rcs", "compare"] + (["--config", args.config] if args.config else [])
    parts += ["--selectors", args.selectors,
              "--fractions", ",".join(f"{f:g}" for f in args.fractions),
              "--seeds", ",".join(str(s) for s in args.seeds), "--out", args.out]
    for o in args.overrides:
        parts += ["--set", o]
    for o in args.finetune_overrides:
        parts += ["--finetune-set", o]
    if args.extra_eps:
        parts += ["--extra-eps", ",".join(f"{round(e * 255, 3):g}/255" for e in args.extra_eps)]
    if args.references:
        parts.append("--references")
    if args.modes != "slf":
        parts += ["--modes", args.modes]
    if args.device:
        parts += ["--device", args.device]
    if args.runs_dir:
        parts += ["--runs-dir", args.runs_dir]
    if not args.share_warmup:
        parts.append("--no-shared-warmup")
    if args.slurm:
        parts.append("--slurm")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from rcs.compare.study import CompareSpec, compare

    spec = CompareSpec(config=args.config,
                       selectors=[s.strip() for s in args.selectors.split(",") if s.strip()],
                       fractions=list(args.fractions), seeds=list(args.seeds), out=args.out,
                       overrides=list(args.overrides),
                       finetune_overrides=list(args.finetune_overrides),
                       modes=[m.strip() for m in args.modes.split(",") if m.strip()],
                       device=args.device, runs_dir=args.runs_dir,
                       extra_eps=list(args.extra_eps), references=args.references,
                       share_warmup=args.share_warmup)
    result = compare(spec, slurm=args.slurm, command=command_line(args))
    print(result.files["markdown"].read_text())
    return 0
