"""`rcs submit <train|select|finetune|eval> ...` and the `--slurm` option set of those commands.

``rcs train -c cfg.yaml --slurm --profile NAME --gpus-per-node 4`` is the same as
``rcs submit train -c cfg.yaml --profile NAME --gpus-per-node 4``. The SLURM options are
removed from the command line the job runs; everything else is the command's own options,
checked here (with the config) before anything is submitted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rcs.cli.slurm_flags import LAUNCHABLE, slurm_flags, slurm_parser
from rcs.cli.train import train_config  # as `rcs train` applies its flags
from rcs.config.schema import SlurmConfig
from rcs.errors import ConfigError


def dispatch(args: argparse.Namespace, argv: list[str]) -> int | None:
    """Called by ``rcs <command>``: submit when --slurm is given, else None (run here)."""
    if not getattr(args, "slurm", False):
        used = [k for k, v in slurm_flags(args).items() if v is not None]
        used += ["sweep"] if getattr(args, "slurm_sweep", None) else []
        used += ["wait"] if getattr(args, "slurm_wait", False) else []
        if used:
            raise ConfigError(f"SLURM option(s) {', '.join(used)} given without --slurm: add "
                              f"--slurm (or use `rcs submit {args.command} ...`)")
        return None
    return submit_cli(args.command, argv[argv.index(args.command) + 1:])


# --------------------------------------------------------------------------------- planning
@dataclass
class Plan:
    command: str
    slurm: SlurmConfig
    run_dir: Path
    name: str
    folder: str
    argvs: list[list[str]]
    points: list[Any] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan(command: str, args: argparse.Namespace, rest: list[str],
         sargs: argparse.Namespace) -> Plan:
    """Check the command and settings, and work out the job(s) to submit."""
    from rcs.launch.settings import file_slurm_section, resolve_slurm
    from rcs.launch.sweep import expand

    overrides = list(getattr(args, "overrides", []) or [])
    config = getattr(args, "config", None)
    if command == "train":
        cfg = train_config(args, [])
        run_dir, run_name = Path(cfg.out_dir), cfg.name
    elif command == "select":
        run_dir, run_name = Path(args.out).parent, Path(args.out).stem
    else:
        out = getattr(args, "out", None)
        run_dir = Path(out) if out else Path(args.checkpoint).parent
        run_name = run_dir.name or command
    slurm = resolve_slurm(file_slurm_section(config), overrides, slurm_flags(sargs))
    notes = []
    if command != "train" and (slurm.nodes > 1 or slurm.ntasks_per_node() > 1):
        notes.append(f"rcs {command} runs as one task: using 1 node, 1 task"
                     + (", 1 GPU" if slurm.gpus_per_node else ""))
        slurm = replace(slurm, nodes=1, tasks_per_node=0, gpus_per_node=min(1,
                                                                            slurm.gpus_per_node))
    from rcs.utils.distributed import per_rank_batch

    ranks = slurm.nodes * slurm.ntasks_per_node()
    if command == "train":  # the global batch must split over the job's ranks: say so now
        per_rank_batch(cfg.train.batch_size, ranks)
    points = expand(sargs.slurm_sweep)
    argvs, outs = [], []
    if not points:
        argvs.append([command] + rest)
        outs.append(str(run_dir) if command != "select" else str(args.out))
    elif command == "train":
        for p in points:
            out = run_dir / p.name
            point_cfg = train_config(args, list(p.overrides) + [f"out_dir={out}"])  # bad keys
            per_rank_batch(point_cfg.train.batch_size, ranks)
            sets = [a for o in p.overrides for a in ("--set", o)]
            argvs.append([command] + rest + sets + ["--out", str(out)])
            outs.append(str(out))
    elif command == "select":
        base = Path(args.out)
        for p in points:
            out = base.with_name(f"{base.stem}_{p.name}{base.suffix or '.npz'}")
            sets = [a for o in p.overrides for a in ("--set", o)]
            argvs.append([command] + rest + sets + ["--out", str(out)])
            outs.append(str(out))
    else:
        raise ConfigError(f"--sweep is available for train and select; submit one `rcs "
                          f"{command}` per setting instead")
    folder = slurm.folder or str(run_dir / "slurm" / "%j")
    name = slurm.job_name or f"rcs-{command}-{run_name}"
    return Plan(command, slurm, run_dir, name, folder, argvs, points, outs, notes)


# --------------------------------------------------------------------------------- submit
def submit_cli(command: str, argv: list[str], log: Any = print) -> int:
    """``rcs submit <command> <argv>``: check, submit, print how to follow; --wait: results."""
    p, jobs, wait = submit(command, argv, log)
    return _wait_and_report(p, jobs, log) if wait else 0


def submit(command: str, argv: list[str], log: Any = print) -> tuple[Plan, list[Any], bool]:
    """Check and submit ``rcs <command> <argv>`` (SLURM options included); returns the plan,
    the submitit jobs and whether --wait was given."""
    from rcs.utils.optional import require

    require("submitit", "submitting to SLURM (rcs submit / --slurm)")
    from rcs.cli.parser import build_parser
    from rcs.cli.slurm_job import RcsJob
    from rcs.launch.submit import describe, job_info, submit_jobs, write_manifest

    if command not in LAUNCHABLE:
        raise ConfigError(f"rcs submit: '{command}' cannot be submitted; choose one of "
                          f"{', '.join(LAUNCHABLE)}")
    sargs, rest = slurm_parser().parse_known_args(argv)
    args = build_parser().parse_args([command] + rest)  # the command's own checks (exit 2)
    p = plan(command, args, rest, sargs)
    check_job_inputs(command, args)
    for note in p.notes:
        log(f"note: {note}")
    jobs = submit_jobs([RcsJob(a) for a in p.argvs], p.slurm, p.folder, p.name)
    for line in describe(jobs, p.slurm.executor):
        log(line)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    records = []
    for i, (job, av, out) in enumerate(zip(jobs, p.argvs, p.outs)):
        rec = {"submitted": now, "command": "rcs " + shlex.join(av), "out": out,
               "slurm": asdict(p.slurm)} | job_info(job)
        if p.points:
            rec |= {"point": p.points[i].name, "overrides": list(p.points[i].overrides)}
        records.append(rec)
    (p.run_dir / "slurm").mkdir(parents=True, exist_ok=True)
    with open(p.run_dir / "slurm" / "jobs.jsonl", "a") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
    if p.points:
        manifest = write_manifest(p.run_dir / "sweep.json", {
            "submitted": now, "command": command, "argv": [command] + rest,
            "axes": [[k, v] for k, v in _axes(p.points)], "jobs": records})
        log(f"sweep of {len(jobs)} points -> {p.run_dir}/<point>/ (manifest {manifest})")
        log(f"  collect: rcs submit collect {p.run_dir}")
    else:
        log(f"  results: {p.outs[0]}")
    return p, jobs, bool(sargs.slurm_wait)


def check_job_inputs(command: str, args: argparse.Namespace) -> None:
    """The checkpoint a select / finetune / eval job reads, checked before the job waits in the
    queue: it exists and is of the kind the command takes (the same errors the job would give)."""
    if command == "select":
        from rcs.cli.select import _check_pretraining
        from rcs.utils.checkpoint_io import load_checkpoint

        _check_pretraining(load_checkpoint(args.checkpoint), args.checkpoint, args.config)
    elif command == "finetune":
        from rcs.finetune import load_pretrained

        load_pretrained(args.checkpoint)
    elif command == "eval":
        from rcs.finetune import load_classifier

        load_classifier(args.checkpoint)


def _axes(points: list[Any]) -> list[tuple[str, list[str]]]:
    axes: dict[str, list[str]] = {}
    for pt in points:
        for k, v in pt.values:
            axes.setdefault(k, [])
            if v not in axes[k]:
                axes[k].append(v)
    return list(axes.items())


def _wait_and_report(p: Plan, jobs: list[Any], log: Any) -> int:
    from rcs.cli.common import print_table
    from rcs.errors import JobFailedError
    from rcs.launch.submit import wait_for

    log(f"waiting for {len(jobs)} job(s) ...")
    failures: list[JobFailedError] = []
    results = []
    for i, job in enumerate(jobs):
        label = f"rcs {p.command}" + (f" {p.points[i].name}" if p.points else "")
        try:
            results.append(wait_for(job, label)[0])
        except JobFailedError as e:
            if not p.points:
                raise
            failures.append(e)
            log(f"FAILED: {e}")
    if p.points and p.command == "train":
        from rcs.launch.collect import collect

        col = collect([p.run_dir])
        log(col["markdown"])
        log(f"table: {col['files']['markdown']}  json: {col['files']['json']}")
    elif p.command == "train":
        cols = ("method", "selector", "fraction", "epochs", "steps", "selections", "final_loss",
                "train_seconds", "select_seconds", "world_size", "restarts", "job_id")
        r = results[0]
        print_table([{c: r.get(c) for c in cols}])
        log(f"run folder: {r.get('out_dir')}")
    else:
        for r in results:
            log(f"job {r.get('job_id')}: rcs {p.command} finished (status {r.get('status')})")
    if failures:
        raise JobFailedError(f"{len(failures)} of {len(jobs)} jobs failed: "
                             + ", ".join(f.job_id for f in failures))
    return 0


# --------------------------------------------------------------------------------- collect
def collect_cli(argv: list[str], log: Any = print) -> int:
    from rcs.launch.collect import collect

    p = argparse.ArgumentParser(prog="rcs submit collect", description=(
        "Collect the summary.json of runs (a sweep folder, or run folders) into one markdown "
        "table and one JSON file; sweep points without a result are listed with their SLURM "
        "state."))
    p.add_argument("dirs", nargs="+", metavar="DIR", help="sweep folders or run folders")
    p.add_argument("--out", default=None, metavar="PREFIX",
                   help="write PREFIX.md and PREFIX.json (default <first DIR>/sweep_summary)")
    a = p.parse_args(argv)
    col = collect([Path(d) for d in a.dirs], a.out)
    log(col["markdown"])
    log(f"table: {col['files']['markdown']}  json: {col['files']['json']}")
    return 0
