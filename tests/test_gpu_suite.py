"""The GPU suite's CPU dry run (`bash bench/gpu_suite.sh --dry-run`): every stage runs at tiny
sizes and summary.json holds every figure (a finite number) and the stage list, so the GPU
minutes are spent measuring, not debugging. About 55 s on a 2-core CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from bench.gpu.summary import FIGURES, STAGES

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_dry_run(tmp_path, cifar10_subset_path):
    out = tmp_path / "res"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1",
               RCS_CIFAR10_SUBSET=str(cifar10_subset_path), OUT=str(tmp_path / "device_out"))
    (tmp_path / "device_out").mkdir()
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--dry-run", "--out",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["dry_run"] is True
    assert [x["name"] for x in s["stages"]] == list(STAGES)
    bad = {x["name"]: x["status"] for x in s["stages"] if x["status"] != "ok"}
    assert not bad and s["failed_stages"] == [], (bad, (out / "logs_tail.txt").read_text())
    for key in FIGURES:
        v = s["figures"][key]
        assert isinstance(v, (int, float)) and math.isfinite(v), (key, v)
    assert s["figures"]["gpu_tests_failed"] == 0
    assert s["figures"]["gpu_tests_passed"] >= 5
    assert any(t["message"].startswith("skipped: no faiss-gpu") for t in s["tests"]
               if t["name"] == "test_faiss_gpu_retrieval_equals_cpu")
    assert {"device", "torch", "cuda", "date"} <= set(s["env"])
    assert "| gpu_throughput_ratio |" in (out / "summary.md").read_text()
    back = sorted(p.name for p in (tmp_path / "device_out" / "gpu").iterdir())
    assert "summary.json" in back and "summary.md" in back and len(back) <= 8
