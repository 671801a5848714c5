"""The comparison harness: plan, mean/std summary, the shared warm-up equals a from-scratch run,
a tiny end-to-end comparison (table, JSON, PNG), reuse of finished runs, `rcs compare` and
`rcs select --method <baseline>` on the command line, the trainer with every baseline."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from rcs.compare.results import mean_std, summarize
from rcs.compare.study import CompareSpec, Job, plan, run_job
from rcs.errors import ConfigError, NotAvailableError
from tests.conftest import tiny

TINY = tiny("data.synthetic_size=48", "train.epochs=3", "train.lr_warmup_epochs=1",
            "selection.warmup_epochs=1", "selection.every=1", "selection.candidate_batch=16",
            "selection.rounds=2", "selection.sketch_dim=32", "finetune.slf.epochs=1",
            "finetune.slf.batch_size=24", "finetune.slf.lr=0.1", "eval.limit=16",
            "eval.pgd.steps=2", "eval.batch_size=16", drop=("train.log_every",))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_plan_runs_full_once_per_seed():
    jobs = plan(["rcs", "full", "random"], [0.1, 0.2], [0, 1])
    names = [j.name for j in jobs]
    assert names == ["rcs-k0.1-s0", "rcs-k0.1-s1", "rcs-k0.2-s0", "rcs-k0.2-s1", "full-s0",
                     "full-s1", "random-k0.1-s0", "random-k0.1-s1", "random-k0.2-s0",
                     "random-k0.2-s1"]
    assert {j.fraction for j in jobs if j.selector == "full"} == {1.0}


def test_mean_std_and_summary():
    m, s, n = mean_std([1.0, 2.0, 4.0, None])
    assert (m, n) == (pytest.approx(7 / 3), 3)
    assert s == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert mean_std([5.0]) == (5.0, None, 1) and mean_std([]) == (None, None, 0)
    rows = [{"selector": "a", "fraction": 0.1, "seed": sd, "pretrain_seconds": t,
             "select_seconds": 0.5, "samples_seen": 10, "SA": sa, "RA": ra}
            for sd, t, sa, ra in ((0, 10.0, 50.0, 20.0), (1, 12.0, 54.0, 22.0))]
    rows.append({"selector": "b", "fraction": 1.0, "seed": 0, "pretrain_seconds": 30.0,
                 "select_seconds": 0.0, "samples_seen": 99, "SA": 60.0, "RA": None})
    out = {(e["selector"], e["fraction"]): e for e in summarize(rows)}
    a = out[("a", 0.1)]
    assert a["seeds"] == [0, 1] and a["SA"]["mean"] == 52.0
    assert a["RA"]["std"] == pytest.approx(math.sqrt(2.0))
    assert a["pretrain_seconds"]["mean"] == 11.0
    assert out[("b", 1.0)]["RA"] == {"mean": None, "std": None, "n": 0}


def test_spec_validation():
    with pytest.raises(ConfigError, match="unknown selector"):
        CompareSpec(None, ["rcs", "nope"], [0.1], [0], "x").validate()
    with pytest.raises(ConfigError, match="fraction"):
        CompareSpec(None, ["rcs"], [1.5], [0], "x").validate()
    with pytest.raises(ConfigError, match="duplicates"):
        CompareSpec(None, ["rcs"], [0.1], [0, 0], "x").validate()
    CompareSpec(None, ["full"], [], [0], "x").validate()


def test_shared_warmup_gives_the_same_run_as_training_from_scratch(tmp_path):
    """The shared warm-up must not change a run: same weights and coresets as from scratch."""
    from rcs.utils.checkpoint_io import load_checkpoint

    job = Job("kcenter", 0.5, 3)
    runs = []
    for share in (True, False):
        spec = CompareSpec(None, ["kcenter"], [0.5], [3], str(tmp_path / f"o{share}"),
                           overrides=TINY, share_warmup=share)
        row = run_job(spec, job, log=lambda _: None)
        assert (row["shared_warmup"] is not None) == share
        run_dir = spec.runs / job.name
        runs.append((load_checkpoint(run_dir / "checkpoint.pt")["model"],
                     [np.load(p)["indices"] for p in sorted((run_dir / "coresets").glob("*.npz"))],
                     row))
    (sd_a, cs_a, row_a), (sd_b, cs_b, row_b) = runs
    assert len(cs_a) == len(cs_b) == 2
    for a, b in zip(cs_a, cs_b):
        np.testing.assert_array_equal(a, b)
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert row_a["samples_seen"] == row_b["samples_seen"]
    assert (row_a["SA"], row_a["RA"]) == (row_b["SA"], row_b["RA"])


def test_compare_end_to_end_and_reuse(tmp_path, capsys):
    from rcs.cli.main import main

    out = tmp_path / "cmp"
    argv = ["compare", "--selectors", "random,kcenter,full", "--fractions", "0.25",
            "--seeds", "0,1", "--out", str(out)] + [a for o in TINY for a in ("--set", o)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    assert [(r["selector"], r["fraction"], r["seed"]) for r in rows] == [
        ("random", 0.25, 0), ("random", 0.25, 1), ("kcenter", 0.25, 0), ("kcenter", 0.25, 1),
        ("full", 1.0, 0), ("full", 1.0, 1)]
    n_cand = 48 - round(0.1 * 48)
    for r in rows:
        assert 0.0 <= r["SA"] <= 100.0 and 0.0 <= r["RA"] <= 100.0
        assert r["pretrain_seconds"] >= r["select_seconds"] >= 0.0
        want = n_cand if r["selector"] == "full" else round(0.25 * n_cand)
        assert r["coreset_size"] == want
    by = {(r["selector"], r["seed"]): r for r in rows}
    # equal budget and schedule: the coreset runs see the same number of images
    assert by[("random", 0)]["samples_seen"] == by[("kcenter", 0)]["samples_seen"] \
        < by[("full", 0)]["samples_seen"]
    assert {e["selector"] for e in res["summary"]} == {"random", "kcenter", "full"}
    assert res["command"].startswith("rcs compare --selectors random,kcenter,full")
    assert res["machine"]["cpu_count"] >= 1 and res["date"]
    md = (out / "results.md").read_text()
    assert "| selector | fraction | seed |" in md and "robust_vs_time.png" in md
    png = (out / "robust_vs_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "RA_extra" not in rows[0] or not rows[0]["RA_extra"]
    # a second call reuses every finished run, and adds an evaluation at another radius
    capsys.readouterr()
    assert main(argv + ["--extra-eps", "2/255", "--references"]) == 0
    assert capsys.readouterr().out.count("reusing") == 6
    res2 = json.loads((out / "results.json").read_text())
    assert [r["SA"] for r in res2["rows"][:6]] == [r["SA"] for r in rows]  # nothing retrained
    refs = res2["rows"][6:]
    assert [(r["selector"], r["seed"]) for r in refs] == [("init", 0), ("init", 1),
                                                          ("warmup", 0), ("warmup", 1)]
    assert refs[0]["samples_seen"] == 0 and refs[0]["pretrain_seconds"] == 0.0
    assert refs[2]["samples_seen"] == n_cand  # one full-data warm-up epoch
    assert refs[2]["pretrain_seconds"] > 0
    assert all(0.0 <= r["RA_extra"]["2/255"] <= 100.0 for r in res2["rows"])
    assert "RA@2/255" in res2["summary"][0]
    assert "RA PGD-20 @2/255 (%)" in (out / "results.md").read_text()
    assert res2["command"].endswith("--extra-eps 2/255 --references")
    # ... and refuses runs made with other settings
    with pytest.raises(ConfigError, match="other settings"):
        run_job(CompareSpec(None, ["random"], [0.25], [0], str(out),
                            overrides=TINY + ["train.epochs=2"]), Job("random", 0.25, 0))


def test_finished_runs_survive_new_config_keys_but_not_changed_ones(tmp_path):
    """A run made before the config schema gained a key is reused (the new key holds its
    default); a run whose settings differ on a shared key is refused."""
    from rcs.compare.runs import _config_dict, _hash
    from rcs.utils.checkpoint_io import load_checkpoint, save_checkpoint

    spec = CompareSpec(None, ["random"], [0.5], [0], str(tmp_path), overrides=TINY,
                       share_warmup=False)
    job = Job("random", 0.5, 0)
    row = run_job(spec, job, log=lambda _: None)
    run_dir = spec.runs / job.name
    # rewrite the run as an older rcs would have left it: no 'train.log_every' key yet
    state = load_checkpoint(run_dir / "checkpoint.pt")
    old_cfg = json.loads(state["config_json"])
    del old_cfg["train"]["log_every"]
    state["config_json"] = json.dumps(old_cfg)
    save_checkpoint(run_dir / "checkpoint.pt", state)
    old_row = dict(row, settings_hash=_hash(_config_dict(old_cfg), spec))
    (run_dir / "result.json").write_text(json.dumps(old_row))
    logs = []
    again = run_job(spec, job, log=logs.append)
    assert any("reusing" in m for m in logs) and again["SA"] == row["SA"]
    # a value that differs on a key both know: refused
    lr = old_cfg["train"]["lr"]
    old_cfg["train"]["lr"] = 123.0
    state["config_json"] = json.dumps(old_cfg)
    save_checkpoint(run_dir / "checkpoint.pt", state)
    (run_dir / "result.json").write_text(json.dumps(
        dict(row, settings_hash=_hash(_config_dict(old_cfg), spec))))
    with pytest.raises(ConfigError, match="other settings"):
        run_job(spec, job, log=lambda _: None)
    # and a new key set away from its default is a different setting too
    old_cfg["train"]["lr"] = lr
    state["config_json"] = json.dumps(old_cfg)
    save_checkpoint(run_dir / "checkpoint.pt", state)
    (run_dir / "result.json").write_text(json.dumps(old_row))
    assert run_job(spec, job, log=lambda _: None)["SA"] == row["SA"]
    with pytest.raises(ConfigError, match="other settings"):
        run_job(dataclasses.replace(spec, overrides=TINY + ["train.log_every=3"]), job)


@pytest.mark.parametrize("executor", [
    pytest.param("local", marks=pytest.mark.slow),
    pytest.param("slurm", marks=pytest.mark.slurm)])
def test_compare_as_job_arrays(tmp_path, executor):
    """--slurm: warm-ups, then the runs, as arrays through rcs.launch.submit_array, on the
    local SLURM cluster (slurm/start_cluster.sh) or with submitit's local executor (the same
    pickled job code in local processes instead of sbatch)."""
    import shutil

    pytest.importorskip("submitit")
    if executor == "slurm" and not shutil.which("sbatch"):
        pytest.skip("no SLURM here (start one with slurm/start_cluster.sh)")
    launch = pytest.importorskip("rcs.launch")
    if not hasattr(launch, "submit_array"):
        pytest.skip("rcs.launch has no submit_array")
    from rcs.compare.study import compare

    spec = CompareSpec(None, ["random", "full"], [0.5], [0], str(tmp_path / "o"),
                       overrides=TINY + ["train.epochs=2", f"slurm.executor={executor}",
                                         "slurm.cpus_per_task=1", "slurm.time_min=5"])
    res = compare(spec, slurm=True, log=lambda _: None)
    assert [(r["selector"], r["seed"]) for r in res.rows] == [("random", 0), ("full", 0)]
    assert res.rows[0]["shared_warmup"] and (tmp_path / "o" / "runs" / "_warmup").is_dir()
    assert (tmp_path / "o" / "results.md").is_file()
    again = run_job(spec, Job("random", 0.5, 0), log=lambda _: None)  # reused, same numbers
    assert again["RA"] == res.rows[0]["RA"]


def test_compare_slurm_without_launcher_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from rcs.compare.study import compare

    monkeypatch.setitem(sys.modules, "rcs.launch", None)  # as if rcs.launch were absent
    spec = CompareSpec(None, ["random"], [0.5], [0], str(tmp_path), overrides=TINY)
    with pytest.raises(NotAvailableError, match="--slurm"):
        compare(spec, slurm=True, log=lambda _: None)


@pytest.mark.parametrize("name", ["kcenter", "gradnorm", "craig"])
def test_trainer_and_rcs_select_with_each_baseline(tmp_path, name, capsys):
    from rcs.cli.main import main
    from rcs.config import load_config
    from rcs.selection import Coreset
    from rcs.train.trainer import Trainer

    cfg = load_config(None, TINY + [f"out_dir={tmp_path / 'run'}", f"selection.method={name}",
                                    "selection.fraction=0.3", "train.epochs=2"])
    summary = Trainer(cfg, resume="none").fit()
    assert summary["selections"] == 1 and summary["selector"] == name
    cs = Coreset.load(tmp_path / "run" / "coresets" / "epoch_0002.npz", dataset_len=48)
    assert len(cs) == round(0.3 * 43) and cs.meta["method"] == name
    out = tmp_path / "sel.npz"
    assert main(["select", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                 "--method", name, "--fraction", "0.2", "--out", str(out)]) == 0
    again = Coreset.load(out, dataset_len=48)
    assert len(again) == round(0.2 * 43) and again.meta["method"] == name
    assert name in capsys.readouterr().out
