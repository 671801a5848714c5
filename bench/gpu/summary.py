"""Last step of the GPU suite: one ``summary.json`` + ``summary.md`` from the stages that finished.

Reads from the results folder: ``stages.tsv`` (name, exit status, seconds of each stage),
``gpu_tests.xml`` and ``gpu_compile.xml`` (pytest's JUnit reports of the GPU-marked tests),
``throughput.json``, ``overhead.json``, ``scale.json`` and ``quality.json``. A stage that
failed or timed out leaves its figures ``null`` and is named in ``failed_stages``; the others
are reported as they are.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

STAGES = ("gpu_tests", "gpu_compile", "throughput", "select_overhead", "select_scale", "quality")
QUALITY_RUNS = ("full", "rcs", "random")
FIGURES = (
    "gpu_tests_passed", "gpu_tests_failed", "gpu_tests_skipped",
    "ours_images_per_s", "naive_images_per_s", "gpu_throughput_ratio",
    "select_epoch_seconds", "selection_seconds", "select_overhead_ratio",
    "select_scale_seconds", "select_scale_peak_gb", "quality_epochs",
    *(f"{k}_{r}" for r in QUALITY_RUNS for k in ("SA", "RA", "pretrain_seconds")),
)
"""Every figure key of summary.json (null where its stage did not finish)."""


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def environment() -> dict[str, Any]:
    """The machine (:func:`rcs.utils.machine.machine`) plus the device name, CUDA and cuDNN
    versions and the date."""
    import torch

    from rcs.utils.machine import machine

    env = machine()
    cuda = torch.cuda.is_available()
    env.update(device=env.get("gpu") or f"CPU ({env['cpu'] or platform.machine()})",
               cuda_available=cuda, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if cuda else None,
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return env


def read_tests(path: Path) -> list[dict[str, str]]:
    """One entry per test of a JUnit report: name, outcome (passed/failed/skipped), message."""
    if not path.is_file():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                msg = (el.get("message") or "").strip()
                if tag == "skipped":
                    msg = f"skipped: {msg.split('Skipped: ', 1)[-1]}"
                break
        out.append({"name": case.get("name", "?"), "outcome": outcome, "message": msg[:300]})
    return out


def read_stages(path: Path) -> list[dict[str, Any]]:
    stages = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, rc, secs = line.split("\t")[:3]
            rc_i = int(rc)
            status = {0: "ok", 124: "timed out", 137: "timed out"}.get(rc_i, "failed")
            stages[name] = {"name": name, "status": status, "rc": rc_i, "seconds": float(secs)}
    return [stages.get(n, {"name": n, "status": "not run", "rc": None, "seconds": None})
            for n in STAGES]


def figures(res: Path, tests: list[dict[str, str]]) -> dict[str, Any]:
    thr, ovh = _load(res / "throughput.json"), _load(res / "overhead.json")
    sc, q = _load(res / "scale.json"), _load(res / "quality.json")
    f: dict[str, Any] = dict.fromkeys(FIGURES)
    if tests:
        for k in ("passed", "failed", "skipped"):
            f[f"gpu_tests_{k}"] = sum(t["outcome"] == k for t in tests)
    f["ours_images_per_s"] = thr.get("ours_images_per_s")
    f["naive_images_per_s"] = thr.get("naive_images_per_s")
    f["gpu_throughput_ratio"] = thr.get("throughput_ratio")
    f["select_epoch_seconds"] = ovh.get("epoch_seconds")
    f["selection_seconds"] = ovh.get("selection_seconds")
    f["select_overhead_ratio"] = ovh.get("select_overhead_ratio")
    f["select_scale_seconds"] = sc.get("seconds")
    f["select_scale_peak_gb"] = sc.get("peak_gb")
    f["quality_epochs"] = (q.get("plan") or {}).get("epochs") if q.get("rows") else None
    for row in q.get("rows") or []:
        for k in ("SA", "RA", "pretrain_seconds"):
            f[f"{k}_{row['selector']}"] = row.get(k)
    return f


def _num(v: Any) -> str:
    return "—" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def markdown(s: dict[str, Any]) -> str:
    e, f = s["env"], s["figures"]
    lines = [f"# rcs GPU suite{' (dry run on CPU, tiny sizes)' if s['dry_run'] else ''}", "",
             f"Device: {e['device']}; torch {e['torch']}, CUDA {e['cuda']}, cuDNN {e['cudnn']}, "
             f"Python {e['python']}, {e['cpu_count']} CPUs; {e['date']}; suite wall time "
             f"{_num(s['wall_seconds'])} s.", "",
             "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {x['name']} | {x['status']} | {_num(x['seconds'])} |" for x in s["stages"]]
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_num(v)} |" for k, v in f.items()]
    lines += ["", "GPU-marked tests:", ""]
    lines += [f"- {t['name']}: {t['outcome']}{' (' + t['message'] + ')' if t['message'] else ''}"
              for t in s["tests"]] or ["- (no report)"]
    q = s["quality"]
    if q:
        lines += ["", f"Quality run ({q.get('status')}): plan {q.get('plan')}; missing runs: "
                      f"{q.get('missing')}.", "",
                  "| run | SA | RA (PGD-20) | pretraining s | images seen |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['selector']} k={r['fraction']} | {_num(r['SA'])} | {_num(r['RA'])} | "
                  f"{_num(r['pretrain_seconds'])} | {_num(r['samples_seen'])} |"
                  for r in q.get("rows", [])]
    if s["failed_stages"]:
        lines += ["", f"Failed stages: {', '.join(s['failed_stages'])} (their logs: *.log)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="the suite's results folder")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--wall-seconds", type=float, default=None)
    a = ap.parse_args(argv)
    res = Path(a.results)
    tests = read_tests(res / "gpu_tests.xml") + read_tests(res / "gpu_compile.xml")
    stages = read_stages(res / "stages.tsv")
    q = _load(res / "quality.json")
    summary = {"dry_run": a.dry_run, "wall_seconds": a.wall_seconds, "env": environment(),
               "stages": stages,
               "failed_stages": [x["name"] for x in stages if x["status"] != "ok"],
               "figures": figures(res, tests), "tests": tests,
               "throughput": _load(res / "throughput.json"),
               "select_overhead": _load(res / "overhead.json"),
               "select_scale": _load(res / "scale.json"), "quality": q}
    (res / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (res / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
