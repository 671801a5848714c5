"""rcs jobs on a REAL SLURM cluster (munge, slurmctld, slurmd, slurmdbd + MariaDB).

Start the one-node cluster first: ``sudo bash slurm/start_cluster.sh`` (CI: `.ci/run` does it).
Run with ``pytest -m slurm``. Without a reachable cluster these tests are skipped with the
reason, except in CI (``CI=true``) where an unreachable cluster is a failure.

Jobs run with the ``local`` profile (partition debug, 1 CPU per task) on tiny synthetic data;
CPU tasks join one gloo DDP group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import sets as _sets
from tests.conftest import tiny

pytestmark = pytest.mark.slurm

TINY = tiny("data.synthetic_size=256", "model.width=8", "selection.method=rcs",
            "selection.warmup_epochs=1", "selection.every=2", "selection.fraction=0.5",
            "selection.rounds=2", "selection.sketch_dim=16", "selection.candidate_batch=32",
            drop=("data.name",))
SLURM = ["--profile", "local", "--time-min", "30", "--mem-gb", "2"]


def _cluster_problem() -> str | None:
    for cmd in ("sbatch", "squeue", "sacct", "scontrol", "scancel", "srun"):
        if shutil.which(cmd) is None:
            return f"`{cmd}` not found"
    checks = (["scontrol", "ping"], ["sacct", "-n", "-X", "-S", "now-1minutes"],
              ["sinfo", "-h", "-o", "%t"])
    for cmd in checks:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError) as e:
            return f"`{' '.join(cmd)}` failed: {e}"
        if res.returncode != 0 or "DOWN" in res.stdout:
            text = " ".join((res.stderr or res.stdout).split())
            return f"`{' '.join(cmd)}` failed: {text[:160]}"
        if cmd[0] == "sinfo" and not any(s.strip().startswith(("idle", "mix", "alloc"))
                                         for s in res.stdout.splitlines()):
            return f"no usable node (sinfo: {res.stdout.strip()!r})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem:
        msg = (f"no local SLURM cluster reachable ({problem}); start it with "
               "`sudo bash slurm/start_cluster.sh`")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {msg}")
        pytest.skip(msg)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # sbatch exports the environment to the job
    monkeypatch.setenv("RCS_QUIET", "1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)


def _events(out: Path, kind: str) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return [r for r in rows if r.get("event") == kind]


def _wait_until(cond, timeout: float, what: str, poll: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _restarts(job_id: str) -> int:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                         text=True).stdout
    return int(out.split("Restarts=")[1].split()[0]) if "Restarts=" in out else 0


def _release_requeued(job_id: str, restarts_before: int, timeout: float = 120) -> None:
    """Wait for the job's requeue; SLURM then holds it for about two minutes (its begin time is
    set in the future): let it start now instead."""
    _wait_until(lambda: _restarts(job_id) > restarts_before, timeout,
                f"job {job_id} to be requeued", poll=0.5)

    def started() -> bool:
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                               text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                           capture_output=True)
            return False
        return state in ("RUNNING", "")  # not while the old run is still COMPLETING

    _wait_until(started, timeout, f"the requeued job {job_id} to start", poll=1.0)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from rcs.utils.checkpoint_io import load_checkpoint

    return load_checkpoint(out / "checkpoint.pt")["model"]


def _coresets(out: Path) -> dict[str, np.ndarray]:
    from rcs.selection import Coreset

    return {p.name: Coreset.load(p).indices for p in sorted((out / "coresets").glob("*.npz"))}


# ----------------------------------------------------------------------------------------
def test_train_two_tasks_gloo_returns_metrics(cluster, tmp_path, capsys):
    """`rcs submit train` with 2 tasks: one gloo DDP group, sharded RCS selection, the
    metrics printed by --wait and returned by the job."""
    from rcs.cli.main import main

    out = tmp_path / "run"
    assert main(["submit", "train", "--out", str(out), *SLURM, "--tasks-per-node", "2",
                 "--wait", *_sets(TINY + ["selection.every=1"])]) == 0
    text = capsys.readouterr().out
    assert "submitted job" in text and "tail -f" in text and "scancel" in text
    assert "| acl    | rcs" in text and "world_size" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["selections"] == 1
    assert np.isfinite(summary["final_loss"])
    job_dir = next((out / "slurm").glob("[0-9]*"))
    logs = sorted(p.name for p in job_dir.glob("*_log.out"))
    assert len(logs) == 2  # one log per rank
    rank1 = (job_dir / logs[1]).read_text()
    assert "RANK=1 WORLD_SIZE=2" in rank1
    meta = json.loads((out / "coresets" / "epoch_0002.json").read_text())
    assert meta["meta"]["world_size"] == 2  # the selection was sharded over the 2 ranks
    # another command through the same path: one selection from the checkpoint, as one task
    cs = tmp_path / "c.npz"
    capsys.readouterr()
    assert main(["select", "--slurm", "--checkpoint", str(out / "checkpoint.pt"), "--fraction",
                 "0.25", "--out", str(cs), *SLURM, "--tasks-per-node", "2", "--wait"]) == 0
    text = capsys.readouterr().out
    assert "one task" in text and "finished (status 0)" in text
    from rcs.selection import Coreset

    assert len(Coreset.load(cs)) == round(0.25 * 230)


def test_preempted_and_timed_out_job_resumes_exactly(cluster, tmp_path):
    """Preempt a 2-task run after its first selection (submitit's interrupt: SIGTERM + USR2),
    then signal it as SLURM does before a time limit (USR2 alone) after the resume: each time
    rank 0 checkpoints, the job requeues itself and resumes. Final weights and every coreset
    equal those of an uninterrupted run."""
    from rcs.cli.slurm_options import submit
    from rcs.launch.submit import wait_for

    cfg = TINY + ["train.epochs=5", "selection.every=2", "data.synthetic_size=320"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    _, (ref_job,), _ = submit("train", ["--out", str(ref), *SLURM, "--tasks-per-node", "2",
                                        *_sets(cfg)], log=lambda _: None)
    assert wait_for(ref_job)[0]["restarts"] == 0
    _, (job,), _ = submit("train", ["--out", str(run), *SLURM, "--tasks-per-node", "2",
                                    *_sets(cfg)], log=lambda _: None)
    _wait_until(lambda: _events(run, "selection") and _events(run, "step")[-1]["epoch"] >= 2,
                300, "the first selection")
    job._interrupt()  # preemption
    _release_requeued(job.job_id, 0)
    _wait_until(lambda: _events(run, "resume"), 300, "the resumed run")
    n = len(_events(run, "step"))
    _wait_until(lambda: len(_events(run, "step")) > n + 2, 120, "steps after the resume")
    job._interrupt(timeout=True)  # time-out
    _release_requeued(job.job_id, 1)
    result = wait_for(job)[0]
    assert result["restarts"] == 2 and result["world_size"] == 2
    resumes = _events(run, "resume")
    assert len(resumes) == 2 and resumes[0]["epoch"] >= 2
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs from the uninterrupted run"
    ca, cb = _coresets(ref), _coresets(run)
    assert list(ca) == ["epoch_0002.npz", "epoch_0004.npz"] and list(cb) == list(ca)
    for k in ca:
        assert np.array_equal(ca[k], cb[k]), f"coreset {k} differs"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selections"] == 2  # no extra selection after the resumes
    sref = json.loads((ref / "summary.json").read_text())
    assert summary["final_loss"] == sref["final_loss"] and summary["steps"] == sref["steps"]


def test_cancelled_job_is_reported_failed(cluster, tmp_path):
    from rcs.cli.slurm_options import submit
    from rcs.errors import JobFailedError
    from rcs.launch.submit import wait_for

    out = tmp_path / "run"
    _, (job,), _ = submit("train", ["--out", str(out), *SLURM,
                                    *_sets(TINY + ["train.epochs=200"])], log=lambda _: None)
    _wait_until(lambda: _events(out, "step"), 300, "the job to train")
    job.cancel()
    t0 = time.monotonic()
    with pytest.raises(JobFailedError, match="CANCELLED") as e:
        wait_for(job)
    assert time.monotonic() - t0 < 120  # not waited on forever
    assert "cancelled" in str(e.value) and e.value.state.startswith("CANCELLED")


def test_remote_error_is_shown(cluster, tmp_path, capsys):
    """A job that raises: the client reports the remote exception, not a hang or a bare code."""
    from rcs.cli.main import main

    missing = tmp_path / "nowhere" / "data.npz"
    assert main(["submit", "train", "--out", str(tmp_path / "run"), *SLURM, "--wait",
                 *_sets(TINY + ["data.name=npz", f"data.root={missing}"])]) == 2
    err = capsys.readouterr().err
    assert "failed on the cluster" in err and "DataError" in err and str(missing) in err
    assert "_0_log.err" in err


def test_array_sweep_is_collected_into_one_table(cluster, tmp_path, capsys):
    from rcs.cli.main import main

    out = tmp_path / "sweep"
    assert main(["submit", "train", "--out", str(out), *SLURM, "--wait",
                 "--sweep", "selection.fraction=0.25,0.5,0.75",
                 *_sets(TINY + ["train.epochs=2", "selection.every=1"])]) == 0
    text = capsys.readouterr().out
    assert "submitted job array" in text and "(3 jobs" in text
    manifest = json.loads((out / "sweep.json").read_text())
    ids = [j["job_id"] for j in manifest["jobs"]]
    assert len({i.split("_")[0] for i in ids}) == 1 and len(ids) == 3  # one array
    rows = json.loads((out / "sweep_summary.json").read_text())["rows"]
    assert [r["selection.fraction"] for r in rows] == ["0.25", "0.5", "0.75"]
    assert all(r["status"] == "done" and r["selector"] == "rcs" for r in rows)
    assert [r["fraction"] for r in rows] == [0.25, 0.5, 0.75]
    # the collect command gives the same table
    assert main(["submit", "collect", str(out), "--out", str(tmp_path / "t")]) == 0
    table = (tmp_path / "t.md").read_text()
    assert table.count("| fraction-") == 3 and "final_loss" in table
