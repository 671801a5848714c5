"""Send an rcs job (train, select, finetune, eval) to SLURM through submitit, or collect the
results of a sweep.

The command's own options follow its name; the SLURM settings come from a profile
(slurm/profiles/NAME.yaml), the config file's slurm: section, --set slurm.key=value and the
flags below, later ones winning. `rcs <command> --slurm ...` is the same as
`rcs submit <command> ...`. Submitting prints the job id, the per-rank log files, and how to
follow (tail -f) and cancel (scancel) the job; --wait waits and prints the results.

Inside the job every task (one per GPU; or --tasks-per-node CPU tasks with gloo) joins one
DDP group; rank 0 writes checkpoints, coresets and metrics. On preemption or time-out the run
checkpoints and requeues itself, then resumes with the same schedule, coreset and RNG streams.

  rcs submit train -c configs/imagenet32_acl_rcs.yaml --profile gpu-8x --nodes 2
  rcs submit train -c configs/tiny/cifar10_acl_rcs.yaml --profile local --wait
  rcs submit train -c cfg.yaml --sweep fraction=0.05,0.1,0.2 --sweep seed=0,1,2 --out runs/sw
  rcs submit collect runs/sw                      # one table of the sweep's results
  rcs submit select --checkpoint runs/x/checkpoint.pt --fraction 0.2 --out c.npz --time-min 30
  rcs train -c cfg.yaml --slurm --partition gpu --gpus-per-node 4 --time-min 1440
"""

from __future__ import annotations

import argparse

JOBS = ("train", "select", "finetune", "eval", "collect")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rcs.cli.slurm_flags import add_slurm_args

    p.add_argument("job", choices=JOBS,
                   help="command to submit, or `collect DIR...` to tabulate a sweep's results")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="the options of that command (see `rcs <command> --help`) and the "
                        "SLURM options below")
    add_slurm_args(p, switch=False)


def run(args: argparse.Namespace) -> int:
    from rcs.cli.slurm_flags import slurm_flags
    from rcs.cli.slurm_options import collect_cli, submit_cli

    # options placed before the command name land in args; pass them on with the rest
    pre: list[str] = []
    from rcs.cli.slurm_flags import FLAGS, LIST_FLAGS

    for opt, key, _, _ in [("--profile", "profile", None, "")] + FLAGS:
        v = slurm_flags(args).get(key)
        if v is not None:
            pre += [opt, str(v)]
    for opt, key, _ in LIST_FLAGS:
        for v in slurm_flags(args).get(key) or []:
            pre.append(f"{opt}={v}")
    for s in args.slurm_sweep or []:
        pre += ["--sweep", s]
    if args.slurm_wait:
        pre.append("--wait")
    if args.job == "collect":
        return collect_cli(list(args.rest))
    return submit_cli(args.job, pre + list(args.rest))
