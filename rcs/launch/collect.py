"""Collect the results of runs (a sweep's points, or any run folders) into one table + JSON.

A run is a folder holding ``summary.json`` (written by `rcs train` at the end of a run). A
sweep folder holds ``sweep.json`` (written by `rcs submit ... --sweep`); its points that have
no summary yet are listed with their SLURM state (pending, running, failed, cancelled ...), so
one look tells what is finished. The swept keys become the first columns. The run folders are
read by :mod:`rcs.report.collect` (the one reader of run results).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rcs.report.collect import read_run_config, read_summary
from rcs.utils.serialize import read_json
from rcs.utils.tables import markdown_table, short_number

COLUMNS = ("method", "selector", "fraction", "seed", "epochs", "steps", "samples_seen",
           "selections", "final_loss", "train_seconds", "select_seconds", "total_seconds",
           "world_size")


def find_runs(root: Path) -> list[Path]:
    """``root`` if it is a run, else the runs below it (job folders are skipped)."""
    if (root / "summary.json").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("summary.json")
                  if "slurm" not in p.relative_to(root).parts)


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job id (``sacct``), empty when SLURM is not reachable."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State"]
    for j in sorted({j.split("_")[0] for j in job_ids}):
        cmd += ["-j", j]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        states[jid.strip()] = state.strip().split(" ")[0]
    return states


def _row(run: Path, base: Path) -> dict[str, Any]:
    s = read_summary(run) or {}
    row: dict[str, Any] = {"run": str(run.relative_to(base)) if run != base else run.name,
                           "status": "done"}
    for c in COLUMNS:
        row[c] = s.get(c)
    if row["seed"] is None:
        row["seed"] = read_run_config(run).get("seed")
    return row


def collect(dirs: list[Path], out: str | Path | None = None) -> dict[str, Any]:
    """Rows of every run under ``dirs`` (plus unfinished sweep points); writes
    ``<out>.md`` and ``<out>.json`` (default ``<dirs[0]>/sweep_summary``)."""
    from rcs.utils.atomic import atomic_write_text

    rows: list[dict[str, Any]] = []
    axes: list[str] = []
    for d in dirs:
        d = Path(d)
        manifest = read_json(d / "sweep.json")
        seen: set[Path] = set()
        if manifest:
            keys = [k for k, _ in manifest.get("axes", [])]
            axes += [k for k in keys if k not in axes]
            jobs = manifest.get("jobs", [])
            missing = [j for j in jobs if not (Path(j["out"]) / "summary.json").is_file()]
            states = slurm_states([j["job_id"] for j in missing])
            for j in jobs:
                run = Path(j["out"])
                vals = dict(o.split("=", 1) for o in j.get("overrides", []))
                if (run / "summary.json").is_file():
                    row = _row(run, d)
                    seen.add(run.resolve())
                else:
                    jid = str(j["job_id"])
                    row = {"run": j.get("point", run.name),
                           "status": states.get(jid, "no result").lower()}
                row |= {k: vals.get(k) for k in keys} | {"job_id": j["job_id"]}
                rows.append(row)
        for run in find_runs(d):
            if run.resolve() not in seen:
                rows.append(_row(run, d))
    columns = ["run"] + axes + ["status"] + [c for c in COLUMNS if c not in axes]
    columns += ["job_id"] if any("job_id" in r for r in rows) else []
    columns = [c for c in columns if any(r.get(c) is not None for r in rows)] or ["run"]
    markdown = _markdown(rows, columns)
    prefix = Path(out) if out else Path(dirs[0]) / "sweep_summary"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    md = atomic_write_text(prefix.with_name(prefix.name + ".md"), markdown + "\n")
    js = atomic_write_text(prefix.with_name(prefix.name + ".json"),
                           json.dumps({"columns": columns, "rows": rows}, indent=2,
                                      sort_keys=True, default=str))
    return {"rows": rows, "columns": columns, "markdown": markdown,
            "files": {"markdown": md, "json": js}}


def _fmt(v: Any) -> str:
    return "" if v is None else short_number(v)


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(no runs found)"
    return markdown_table(columns, [[r.get(c) for c in columns] for r in rows], aligned=True,
                          fmt=_fmt)
