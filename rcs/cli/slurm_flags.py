"""The SLURM option set of the launchable commands (``rcs train|select|finetune|eval --slurm``
and ``rcs submit``): each flag and the ``slurm.*`` key it sets."""

from __future__ import annotations

import argparse
from typing import Any

LAUNCHABLE = ("train", "select", "finetune", "eval")

# (option, SlurmConfig key, type, help)
FLAGS: list[tuple[str, str, Any, str]] = [
    ("--partition", "partition", str, "SLURM partition (slurm.partition)"),
    ("--nodes", "nodes", int, "number of nodes; train runs multi-node DDP (slurm.nodes)"),
    ("--gpus-per-node", "gpus_per_node", int,
     "GPUs per node; one task (DDP rank) per GPU (slurm.gpus_per_node)"),
    ("--tasks-per-node", "tasks_per_node", int,
     "tasks (DDP ranks) per node; default one per GPU, or 1 (slurm.tasks_per_node)"),
    ("--cpus-per-task", "cpus_per_task", int, "CPUs per task (slurm.cpus_per_task)"),
    ("--mem-gb", "mem_gb", float, "memory per node in GB (slurm.mem_gb)"),
    ("--time-min", "time_min", int, "time limit of one run in minutes; before it the job "
     "checkpoints and requeues itself (slurm.time_min)"),
    ("--account", "account", str, "account to charge (slurm.account)"),
    ("--qos", "qos", str, "quality of service (slurm.qos)"),
    ("--constraint", "constraint", str, "node features, e.g. a100 (slurm.constraint)"),
    ("--array-parallelism", "array_parallelism", int,
     "sweep points running at once (slurm.array_parallelism)"),
    ("--job-dir", "folder", str, "job folder, %%j = job id (slurm.folder; default "
     "<run>/slurm/%%j)"),
    ("--job-name", "job_name", str, "job name (slurm.job_name)"),
    ("--executor", "executor", str, "slurm (default) | local: submitit's local executor, "
     "the same job code without a cluster (slurm.executor)"),
]
LIST_FLAGS = [("--sbatch", "extra_sbatch", "extra sbatch option, written with '=': "
               "--sbatch=--exclusive --sbatch=--mail-type=END (slurm.extra_sbatch; repeatable)"),
              ("--setup", "setup", "shell line run before the job, e.g. --setup 'module load "
               "cuda' (slurm.setup; repeatable)")]


def add_slurm_args(p: argparse.ArgumentParser, switch: bool = True) -> None:
    """The SLURM option group (``--slurm`` and the settings) of a launchable command."""
    g = p.add_argument_group(
        "SLURM", "send the command to SLURM through submitit (`--slurm`, or `rcs submit "
        "<command> ...`). Settings: profile < config file slurm: < --set slurm.* < these flags")
    if switch:
        g.add_argument("--slurm", action="store_true",
                       help="submit this command as a SLURM job instead of running it here")
    g.add_argument("--profile", dest="slurm_profile", default=None, metavar="NAME",
                   help="cluster profile slurm/profiles/NAME.yaml (or a YAML path)")
    for opt, key, tp, help_text in FLAGS:
        metavar = {"mem_gb": "GB", "time_min": "MIN", "folder": "DIR"}.get(
            key, "N" if tp is int else "NAME")
        g.add_argument(opt, dest=f"slurm_{key}", type=tp, default=None, help=help_text,
                       metavar=metavar if key != "executor" else None,
                       **({"choices": ["slurm", "local"]} if key == "executor" else {}))
    for opt, key, help_text in LIST_FLAGS:
        g.add_argument(opt, dest=f"slurm_{key}", action="append", default=None,
                       metavar="LINE", help=help_text)
    g.add_argument("--sweep", dest="slurm_sweep", action="append", default=[],
                   metavar="KEY=V1,V2",
                   help="run one job per value as a job array; several --sweep options give "
                        "their product (e.g. --sweep fraction=0.1,0.2 --sweep seed=0,1,2); "
                        "each point writes <out>/<point>/; collect with `rcs submit collect`")
    g.add_argument("--wait", dest="slurm_wait", action="store_true",
                   help="wait for the job(s) and print the results (errors of the job included)")


def slurm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_slurm_args(p)
    return p


def slurm_flags(ns: argparse.Namespace) -> dict[str, Any]:
    keys = ["profile"] + [k for _, k, _, _ in FLAGS] + [k for _, k, _ in LIST_FLAGS]
    return {k: getattr(ns, f"slurm_{k}", None) for k in keys}
