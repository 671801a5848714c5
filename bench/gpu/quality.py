"""Stage 4 of the GPU suite: a short quality run sized to the time it has left.

ACL (configs/cifar10_acl_rcs.yaml: full-width dual-BN ResNet-18, 512-d head, batch 512, PGD-5,
LARS) on the real CIFAR-10 subset, three runs at the same schedule through ``rcs compare``: full
data, RCS k = 0.2 and random k = 0.2 (E epochs, full-data warm-up W = E/10, a new coreset every
W epochs, shared warm-up), then SLF and clean + PGD-20 accuracy on the 1,017 test images.

E is the largest number of epochs whose estimated cost fits ``--budget`` seconds, from the epoch
time the throughput stage measured (``--throughput``; else ``--epoch-seconds``) and the selection
time of the overhead stage (``--overhead``). ``rcs compare`` runs under that budget; when it
runs out, the runs finished so far are reported and the rest are named missing. Writes
``--json``: the plan, one row per run (SA, RA, pretraining seconds, ...), the missing runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNS = ("rcs", "random", "full")


def _load(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def plan_epochs(budget: float, epoch_s: float, select_s: float, fixed_s: float,
                fraction: float = 0.2, max_epochs: int = 100, min_epochs: int = 2) -> dict:
    """Largest E (a multiple of 10 when E >= 10) whose estimated time fits ``budget``: the full
    run E epochs, the shared warm-up W, two coreset runs of (E - W)·k epochs, one selection per
    F = W epochs, ``fixed_s`` per run (start, SLF, PGD-20), 15% margin."""
    def cost(e: int) -> tuple[float, int, int]:
        w = max(1, round(e / 10))
        n_sel = math.ceil((e - w) / w)
        core = (e - w) * fraction * epoch_s * 1.05  # BN recalibration batches
        return e * epoch_s + w * epoch_s + 2 * core + n_sel * select_s + 3 * fixed_s, w, n_sel

    choices = [e for e in range(max_epochs, 9, -10)] + list(range(9, min_epochs - 1, -1))
    for e in choices:
        c, w, n_sel = cost(e)
        if c * 1.15 <= budget:
            return {"epochs": e, "warmup": w, "every": w, "selections": n_sel,
                    "estimated_seconds": c}
    c, w, n_sel = cost(min_epochs)
    return {"epochs": min_epochs, "warmup": w, "every": w, "selections": n_sel,
            "estimated_seconds": c, "over_budget": True}


def compare_command(a: argparse.Namespace, p: dict, out: Path) -> list[str]:
    sets = ["data.name=npz", f"data.root={a.npz}", "data.download=false",
            f"train.epochs={p['epochs']}", f"train.lr_warmup_epochs={p['warmup']}",
            f"selection.warmup_epochs={p['warmup']}", f"selection.every={p['every']}",
            "train.bn_recalibration=2", *a.set]
    ft = [f"finetune.slf.epochs={a.slf_epochs}", "finetune.slf.lr=0.1",
          "finetune.slf.batch_size=128",
          f"finetune.slf.milestones=[{max(1, a.slf_epochs * 3 // 5)},"
          f"{max(1, a.slf_epochs * 4 // 5)}]", *a.finetune_set]
    cmd = [sys.executable, "-m", "rcs", "compare", "-c", a.config, "--selectors",
           ",".join(RUNS), "--fractions", "0.2", "--seeds", "0", "--out", str(out),
           "--device", a.device]
    for s in sets:
        cmd += ["--set", s]
    for s in ft:
        cmd += ["--finetune-set", s]
    return cmd


def collect(out: Path) -> list[dict[str, Any]]:
    """Rows of the finished runs (``rcs compare``'s results.json, else each run's result.json)."""
    done = _load(str(out / "results.json"))
    rows = done.get("rows") or [_load(str(f)) for f in sorted((out / "runs").glob("*/result.json"))]
    keep = ("selector", "fraction", "SA", "RA", "pretrain_seconds", "train_seconds",
            "select_seconds", "samples_seen", "selections", "epochs", "finetune_seconds",
            "eval_seconds", "device")
    return [{k: r.get(k) for k in keep} for r in rows if r]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, required=True, help="seconds this stage may take")
    ap.add_argument("--out", required=True, help="folder for the compare runs")
    ap.add_argument("--json", required=True)
    ap.add_argument("--config", default="configs/cifar10_acl_rcs.yaml")
    ap.add_argument("--throughput", default="", help="JSON of the throughput stage")
    ap.add_argument("--overhead", default="", help="JSON of the selection-overhead stage")
    ap.add_argument("--epoch-seconds", type=float, default=8.0,
                    help="epoch time when no throughput figure is there")
    ap.add_argument("--fixed-seconds", type=float, default=25.0,
                    help="per-run cost besides pretraining (start, SLF, PGD-20)")
    ap.add_argument("--train-images", type=int, default=5496, help="images of a full epoch")
    ap.add_argument("--epochs", type=int, default=0, help="fixed E (0 = from the budget)")
    ap.add_argument("--slf-epochs", type=int, default=25)
    ap.add_argument("--set", action="append", default=[], help="extra rcs compare --set")
    ap.add_argument("--finetune-set", action="append", default=[])
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    thr, ovh = _load(a.throughput), _load(a.overhead)
    epoch_s = (a.train_images / thr["ours_images_per_s"] if thr.get("ours_images_per_s")
               else ovh.get("epoch_seconds") or a.epoch_seconds)
    select_s = ovh.get("selection_seconds") or 0.5 * epoch_s
    p = plan_epochs(a.budget - 5, epoch_s, select_s, a.fixed_seconds)
    if a.epochs:
        w = max(1, round(a.epochs / 10))
        p = {"epochs": a.epochs, "warmup": w, "every": w,
             "selections": math.ceil((a.epochs - w) / w), "estimated_seconds": None}
    p |= {"epoch_seconds_assumed": epoch_s, "selection_seconds_assumed": select_s}
    out = Path(a.out)
    cmd = compare_command(a, p, out)
    print(f"[quality] plan {p}\n[quality] {' '.join(cmd)}", flush=True)
    status = "ok"
    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop(signum: int, frame: Any) -> None:  # the suite's timeout: take the runs down too
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        rc = proc.wait(timeout=max(1.0, a.budget - (time.perf_counter() - t0) - 3))
        status = "ok" if rc == 0 else f"failed (rc {rc})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = "timed out"
    rows = collect(out)
    missing = [r for r in RUNS if r not in {x["selector"] for x in rows}]
    Path(a.json).write_text(json.dumps({
        "status": status, "plan": p, "rows": rows, "missing": missing,
        "seconds": time.perf_counter() - t0, "command": cmd}, indent=2, default=str))
    print(f"[quality] {status}; runs done: {[r['selector'] for r in rows]}, missing {missing}")
    return 0 if status == "ok" and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
