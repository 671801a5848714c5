"""Equal-budget comparison of coreset selectors: pretrain with each, fine-tune, evaluate, report.

For every selector x fraction x seed (``full`` once per seed, at fraction 1), the harness runs
the same pretraining config -- same epochs, warm-up, re-selection period, batch size, attack and
model, and, for a given seed, the same initialisation, validation split and batch-order seeds;
only ``selection.method`` / ``selection.fraction`` differ -- then SLF (by default; any of
slf/alf/aff) and the clean + PGD-20 evaluation of ``rcs.finetune`` / ``rcs.evaluate``. It writes

    RUNS/<selector>-k<fraction>-s<seed>/   each run (rcs train layout + finetune/ + result.json)
    RUNS/_warmup/k<fraction>-s<seed>/      the shared full-data warm-up (see shared_warmup)
    OUT/results.json                       every run's row, the mean/std summary, the command,
                                           the machine, the date and the shared config
    OUT/results.md                         per-run table, mean ± std over seeds, the plot
    OUT/robust_vs_time.png                 RA (and SA) against pretraining time

(``RUNS`` = ``runs_dir``, default ``OUT/runs``; tables and plot: :mod:`rcs.compare.results`.)

Pretraining time is ``train_seconds + select_seconds`` of the run (wall time of the training
epochs plus every coreset selection); selection time is ``select_seconds`` alone. Fine-tuning
and evaluation are the same work for every selector and are reported separately. Wall times on
a shared machine are noisy, so ``images seen`` (a deterministic measure of training work) is
reported too. Optional: robust accuracy at extra radii (``extra_eps``) and the reference
encoders (``references``: untrained, warm-up only) that show where the floor is.

A run whose ``result.json`` exists is reused when it was made with the same settings (the
harness can be re-run after an interruption; ``rcs train`` itself resumes mid-run; config keys
added to rcs since, at their defaults, do not count as a change), and refused with a clear
error otherwise. ``slurm=True`` runs the warm-ups, then the runs, as SLURM job arrays through
``rcs.launch.submit_array``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rcs.compare.results import markdown, plot, summarize
from rcs.compare.runs import (
    REFERENCES,
    Job,
    eps_label,
    job_config,
    reference_row,
    run_job,
    warmup_job,
)
from rcs.compare.spec import CompareSpec
from rcs.errors import NotAvailableError
from rcs.utils.atomic import atomic_write_text
from rcs.utils.machine import machine


def plan(selectors: Sequence[str], fractions: Sequence[float], seeds: Sequence[int]) -> list[Job]:
    """Every run: each coreset selector at each fraction and seed; ``full`` once per seed."""
    jobs = []
    for sel in selectors:
        for seed in seeds:
            if sel == "full":
                jobs.append(Job("full", 1.0, int(seed)))
            else:
                jobs += [Job(sel, float(f), int(seed)) for f in fractions]
    return sorted(set(jobs), key=lambda j: (list(selectors).index(j.selector), j.fraction,
                                            j.seed))


# --------------------------------------------------------------------------------- driver
@dataclass
class CompareResult:
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    files: dict[str, Path]


def _slurm_rows(spec: CompareSpec, jobs: list[Job], log: Callable[[str], None]
                ) -> list[dict[str, Any]]:
    """Run the jobs as SLURM job arrays through ``rcs.launch.submit_array`` (the ``slurm.*``
    config keys; ``slurm.executor=local`` runs them as local processes): first one array of
    the shared warm-ups (one per fraction and seed), then one array of all runs."""
    try:
        from rcs.launch import submit_array
    except ImportError:
        raise NotAvailableError(
            "`rcs compare --slurm` needs rcs.launch.submit_array (SLURM launching), which is "
            "not available in this version; run without --slurm (sequentially), or submit "
            "`rcs compare` itself as one job") from None
    import dataclasses

    spec = dataclasses.replace(  # jobs may start in another folder: absolute paths
        spec, out=str(Path(spec.out).absolute()), runs_dir=str(spec.runs.absolute()),
        config=str(Path(spec.config).absolute()) if spec.config else None)
    cfg = job_config(spec, jobs[0])
    folder = Path(spec.out) / "slurm" / "%j"
    if spec.share_warmup and cfg.selection.warmup_epochs > 0:
        firsts = list({(j.fraction, j.seed): j for j in jobs if j.selector != "full"}.values())
        if firsts:
            log(f"[compare] SLURM: {len(firsts)} shared warm-up(s)")
            submit_array(warmup_job, [(spec, j) for j in firsts], cfg.slurm, folder=folder,
                         log=log, name="rcs-compare-warmup")
    log(f"[compare] SLURM: {len(jobs)} runs")
    return list(submit_array(run_job, [(spec, j) for j in jobs], cfg.slurm, folder=folder,
                             log=log, name="rcs-compare"))


def compare(spec: CompareSpec, slurm: bool = False, command: str = "",
            log: Callable[[str], None] = print) -> CompareResult:
    """Run (or reuse) every job of ``spec`` and write the table, JSON and plot into
    ``spec.out``."""
    from rcs.config import to_dict

    spec.validate()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(spec.selectors, spec.fractions, spec.seeds)
    log(f"[compare] {len(jobs)} runs: " + ", ".join(j.name for j in jobs))
    started = datetime.datetime.now(datetime.timezone.utc)
    if slurm:
        rows = _slurm_rows(spec, jobs, log)
    else:
        rows = [run_job(spec, j, log) for j in jobs]
    if spec.references:
        rows += [reference_row(spec, kind, seed, log) for kind in REFERENCES
                 for seed in spec.seeds]
    summary = summarize(rows)
    shared = to_dict(job_config(spec, jobs[0]))
    for k in ("out_dir", "seed"):
        shared.pop(k, None)
    shared["selection"].pop("method", None)
    shared["selection"].pop("fraction", None)
    pgd = rows[0].get("pgd") or vars(job_config(spec, jobs[0]).eval.pgd)
    ra_label = f"PGD-{pgd['steps']} @{eps_label(pgd['eps'])}"
    files = {"plot": plot(rows, summary, out / "robust_vs_time.png", ra_label)}
    record = {"command": command, "date": started.isoformat(timespec="seconds"),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"),
              "machine": machine(), "spec": asdict(spec), "shared_config": shared,
              "rows": rows, "summary": summary}
    files["json"] = atomic_write_text(out / "results.json",
                                      json.dumps(record, indent=2, sort_keys=True, default=str))
    table = markdown(rows, summary, spec.modes[0], f"RA {ra_label}")
    text = [f"# Equal-budget selector comparison ({spec.modes[0].upper()} + PGD-20)", "",
            f"Command: `{command}`" if command else "", "",
            f"Date: {record['date']}; machine: {record['machine']['cpu']}, "
            f"{record['machine']['cpu_count']} cores, torch {record['machine']['torch']}.", "",
            table, "", f"![robust accuracy vs pretraining time]({files['plot'].name})", ""]
    files["markdown"] = atomic_write_text(out / "results.md", "\n".join(text))
    log(f"[compare] results: {files['markdown']}, {files['json']}, {files['plot']}")
    return CompareResult(rows, summary, files)
