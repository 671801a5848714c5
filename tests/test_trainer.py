"""The pretraining loop: schedule, outputs, exact resume after SIGTERM / SIGKILL, NaN stop, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rcs.config import load_config
from rcs.errors import NonFiniteLossError
from rcs.utils.checkpoint_io import load_checkpoint
from rcs.utils.metrics import read_jsonl
from tests.conftest import tiny

TINY = tiny("train.epochs=3", "train.lr=0.5", "train.lr_warmup_epochs=1", "selection.method=random",
            "selection.warmup_epochs=1", "selection.every=1", "selection.fraction=0.5")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RCS_QUIET="1")


def cli(out: Path, *extra: str) -> list[str]:
    sets = [a for kv in TINY + list(extra) for a in ("--set", kv)]
    return [sys.executable, "-m", "rcs.cli.main", "train", "--out", str(out), *sets]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoint.pt")["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_schedule_outputs_and_summary(tmp_path):
    from rcs.train.trainer import Trainer

    cfg = load_config(None, TINY + [f"out_dir={tmp_path}", "train.lr_schedule=samples"])
    summary = Trainer(cfg, resume="none").fit()
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    epochs = [r for r in recs if r["event"] == "epoch"]
    sels = [r for r in recs if r["event"] == "selection"]
    n_cand = 96 - round(0.1 * 96)
    assert [r["epoch_size"] for r in epochs] == [n_cand, round(0.5 * n_cand), round(0.5 * n_cand)]
    assert [r["epoch"] for r in sels] == [2, 3] and all(r["size"] == 43 for r in sels)
    steps = [r for r in recs if r["event"] == "step"]
    assert len(steps) == summary["steps"] == 6 + 3 + 3
    assert all(np.isfinite(r["loss"]) for r in steps)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["complete"] and ck["progress"]["epoch"] == 4
    assert len(ck["coreset"]["indices"]) == 43
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "summary.json").exists()
    assert (tmp_path / "coresets" / "epoch_0002.npz").exists()
    # the lr follows the closed-form schedule in samples seen
    from rcs.train.schedule import CosineWarmup

    sched = CosineWarmup(0.5, total_samples=n_cand + 2 * 43, warmup_samples=n_cand,
                         min_lr=cfg.train.min_lr)
    seen = 0
    for r in steps:
        seen = r["samples_seen"]
        assert r["lr"] == pytest.approx(sched.lr_at(seen), rel=1e-9)
    assert seen == n_cand + 2 * 43


def test_epoch_schedule_follows_epochs_over_shrinking_epochs(tmp_path):
    """6 epochs, 2 full-data epochs then coreset epochs of k = 0.2, lr warm-up 1 epoch: every
    step's rate is base * f((e - 1) + (b + 1) / n_e) whatever the epoch's length n_e; after
    epoch 3 it is base * (1 + cos(pi * 2 / 5)) / 2."""
    from rcs.train.trainer import Trainer

    base = 0.5
    cfg = load_config(None, TINY + [
        f"out_dir={tmp_path}", "train.lr_schedule=epoch", "train.epochs=6", f"train.lr={base}",
        "train.lr_warmup_epochs=1", "train.min_lr=0", "selection.warmup_epochs=2",
        "selection.every=2", "selection.fraction=0.2"])
    Trainer(cfg, resume="none").fit()
    recs = read_jsonl(tmp_path / "metrics.jsonl")

    def closed_form(t):  # warm-up over [0, 1], cosine over [1, 6], in epochs
        return base * t if t < 1 else base * 0.5 * (1 + np.cos(np.pi * (t - 1) / 5))

    steps = [r for r in recs if r["event"] == "step"]
    per_epoch = {e: [r for r in steps if r["epoch"] == e] for e in range(1, 7)}
    sizes = [len(per_epoch[e]) for e in range(1, 7)]
    assert sizes == [6, 6, 2, 2, 2, 2]  # 86 candidates / 16, then 17-image coresets / 16
    for e, rs in per_epoch.items():
        for b, r in enumerate(rs):
            assert r["lr"] == pytest.approx(closed_form(e - 1 + (b + 1) / len(rs)), rel=1e-12)
    epochs = {r["epoch"]: r["lr"] for r in recs if r["event"] == "epoch"}
    assert [epochs[e] for e in range(1, 7)] == pytest.approx([closed_form(e) for e in range(1, 7)],
                                                              rel=1e-12)
    assert epochs[3] == pytest.approx(base * 0.5 * (1 + np.cos(np.pi * 2 / 5)), rel=1e-12)
    # the samples schedule is another curve: after epoch 3 it is at (172 + 17 - 86) / (240 - 86)
    samples_lr = base * 0.5 * (1 + np.cos(np.pi * (172 + 17 - 86) / (240 - 86)))
    assert abs(epochs[3] - samples_lr) > 0.05


def _wait_for(pred, proc, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _steps_logged(out: Path, epoch: int, n: int):
    def pred():
        path = out / "metrics.jsonl"
        if not path.exists():
            return False
        return sum(1 for r in read_jsonl(path) if r.get("event") == "step"
                   and r.get("epoch") == epoch) >= n
    return pred


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs' final weights, per lr schedule (computed on first use)."""
    cache: dict[str, dict] = {}

    def get(schedule: str) -> dict:
        if schedule not in cache:
            out = tmp_path_factory.mktemp(f"reference-{schedule}")
            subprocess.run(cli(out, f"train.lr_schedule={schedule}"), env=ENV, check=True,
                           capture_output=True, timeout=300)
            cache[schedule] = weights(out)
        return cache[schedule]

    return get


@pytest.mark.parametrize("sig, epoch, after, schedule", [
    (signal.SIGTERM, 1, 2, "epoch"), (signal.SIGKILL, 2, 1, "epoch"),
    (signal.SIGKILL, 2, 1, "samples")])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, reference_runs, sig, epoch,
                                                     after, schedule):
    """Kill the run mid-epoch, run the same command again: final weights are bitwise equal
    (under either lr schedule)."""
    reference_run = reference_runs(schedule)
    cmd = cli(tmp_path, f"train.lr_schedule={schedule}")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert _wait_for(_steps_logged(tmp_path, epoch, after), proc), proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
        assert b"Run the same command again to resume" in out
        prog = load_checkpoint(tmp_path / "checkpoint.pt")["progress"]
        assert prog["epoch"] == epoch and prog["batch"] >= after  # a mid-epoch checkpoint
    else:
        assert proc.returncode == -signal.SIGKILL
    res = subprocess.run(cmd, env=ENV, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert any(r["event"] == "resume" for r in read_jsonl(tmp_path / "metrics.jsonl"))
    assert_same_weights(weights(tmp_path), reference_run)


DYNACL_RCS = ["train.method=dynacl", "train.epochs=3", "selection.method=rcs",
              "selection.warmup_epochs=1", "selection.every=1", "selection.rounds=2",
              "selection.val_attack_steps=1", "selection.candidate_batch=16",
              "selection.sketch_dim=64"]
# Runs `rcs train`, but SIGKILLs itself when the trainer is about to select before epoch
# KILL_EPOCH: a deterministic point between the end-of-epoch checkpoint and the selection (the
# selection itself, the training and the resume are the real code).
KILL_BEFORE_SELECTION = """
import os, signal, sys
from rcs.train import trainer
select = trainer.Trainer.select
def killing_select(self, epoch):
    if epoch == int(os.environ["KILL_EPOCH"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return select(self, epoch)
trainer.Trainer.select = killing_select
from rcs.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_dynacl_rcs_killed_before_a_selection_resumes_to_the_same_coresets(tmp_path):
    """DynACL + RCS: the selection before epoch e augments with epoch e's strength (set first,
    then select, as published), and a run killed just before that selection selects, after
    the resume, bitwise the same coresets and trains to the same weights."""
    from rcs.losses import dynacl_strength

    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(cli(ref, *DYNACL_RCS), env=ENV, check=True, capture_output=True,
                   timeout=300)
    sels = [r for r in read_jsonl(ref / "metrics.jsonl") if r["event"] == "selection"]
    assert [r["epoch"] for r in sels] == [2, 3]
    assert [r["augment_strength"] for r in sels] == [dynacl_strength(2, 3), dynacl_strength(3, 3)]
    assert dynacl_strength(3, 3) != dynacl_strength(2, 3) != 1.0
    cmd = cli(killed, *DYNACL_RCS)
    res = subprocess.run([cmd[0], "-c", KILL_BEFORE_SELECTION, *cmd[3:]],
                         env=dict(ENV, KILL_EPOCH="3"), capture_output=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    prog = load_checkpoint(killed / "checkpoint.pt")["progress"]
    assert (prog["epoch"], prog["batch"], prog["selected_epoch"]) == (3, 0, 2)
    assert not (killed / "coresets" / "epoch_0003.npz").exists()
    res = subprocess.run(cmd, env=ENV, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for epoch in (2, 3):
        a = np.load(ref / "coresets" / f"epoch_{epoch:04d}.npz")
        b = np.load(killed / "coresets" / f"epoch_{epoch:04d}.npz")
        assert sorted(a.files) == sorted(b.files) and "indices" in a.files
        for key in a.files:
            assert np.array_equal(a[key], b[key]), f"coreset of epoch {epoch}: {key} differs"
    assert_same_weights(weights(killed), weights(ref))


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    from rcs.methods import register_method
    from rcs.methods.acl import ACL
    from rcs.train.trainer import Trainer

    @register_method("acl_nan_at_step_8")
    class Exploding(ACL):
        calls = 0

        def step(self, *a, **k):
            out = super().step(*a, **k)
            Exploding.calls += 1
            if Exploding.calls == 9:  # 0-based step 8 = the 3rd step of epoch 2
                out.loss = out.loss * float("nan")
            return out

    cfg = load_config(None, TINY + [f"out_dir={tmp_path}", "train.method=acl_nan_at_step_8"])
    trainer = Trainer(cfg, resume="none")
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 8 \(epoch 2, batch 2\)"):
        trainer.fit()
    ck = load_checkpoint(tmp_path / "checkpoint.pt")  # the last good one: end of epoch 1
    assert ck["progress"]["epoch"] == 2 and ck["progress"]["batch"] == 0
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_ddp_two_processes_match_single_process(tmp_path):
    """train.batch_size is the global batch: 64 over 2 gloo ranks (32 each) vs 64 in one
    process: the same global batches, near-equal weights.

    SAT (cross-entropy decomposes over samples) with augmentation off and attacks starting at x,
    so the only difference left is BatchNorm statistics computed per rank (no SyncBN on CPU).
    The exactness of the cross-rank contrastive loss is tested in test_distributed.py.
    """
    common = ["data.synthetic_size=256", "data.val_fraction=0", "model.width=8", "model.head=none",
              "model.bn_names=[pgd]", "train.method=sat", "train.epochs=1",
              "train.attack.random_start=false", "augment.strength=0", "augment.flip_prob=0",
              "selection.method=full", "train.lr=0.05", "train.optimizer=sgd",
              "train.lr_warmup_epochs=0"]
    single, multi = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(cli(single, *common, "train.batch_size=64"), env=ENV, check=True,
                   capture_output=True, timeout=300)
    port = 29500 + os.getpid() % 1000
    cmd = cli(multi, *common, "train.batch_size=64")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={port}", "-m", "rcs.cli.main", *cmd[3:]]
    res = subprocess.run(cmd, env=ENV, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    from rcs.train.trainer import Trainer

    w0 = Trainer(load_config(None, TINY + common + [f"out_dir={tmp_path / 'init'}"]),
                 resume="none").model.state_dict()
    a, b = weights(single), weights(multi)
    num = den = 0.0
    for k in w0:
        if w0[k].is_floating_point() and "running" not in k:
            num += float((a[k] - b[k]).double().pow(2).sum())
            den += float((a[k] - w0[k]).double().pow(2).sum())
    assert den > 0
    assert (num / den) ** 0.5 < 0.2, f"DDP update differs by {(num / den) ** 0.5:.3f}"
    summary = json.loads((multi / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["samples_seen"] == 256
    assert summary["steps"] == json.loads((single / "summary.json").read_text())["steps"] == 4


def test_global_batch_the_ranks_cannot_split_is_refused_before_joining(tmp_path, monkeypatch):
    """Rank 0 of a 2-rank torchrun environment with train.batch_size=63: a ConfigError naming
    the key and the fix, before any process group is joined (no wait for the other rank)."""
    from rcs.errors import ConfigError
    from rcs.train.trainer import Trainer

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load_config(None, TINY + [f"out_dir={tmp_path}", "train.batch_size=63"])
    with pytest.raises(ConfigError, match=r"train.batch_size=63 is the global batch \(all ranks "
                       r"together\) and must be divisible by the 2 DDP ranks; .*62 or 64"):
        Trainer(cfg, resume="none")
    assert not torch.distributed.is_initialized()


def test_init_from_a_warm_up_continues_exactly_like_one_run(tmp_path):
    """A warm-up run stopped after its full-data epoch, then a fresh run started from its
    checkpoint with init_from(continue_schedule=True), ends with the same weights as one
    uninterrupted run (same seed, same selector): the schedule, optimizer and epoch go on."""
    from rcs.errors import CheckpointError
    from rcs.train.trainer import Trainer

    def cfg(out, *extra):
        return load_config(None, TINY + [f"out_dir={tmp_path / out}", *extra])

    Trainer(cfg("one"), resume="none").fit()
    Trainer(cfg("warm"), resume="none").fit(until_epoch=1)
    t = Trainer(cfg("rest"), resume="none")
    t.init_from(tmp_path / "warm" / "checkpoint.pt", continue_schedule=True)
    assert t.progress.epoch == 2
    t.fit()
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "rest"))
    # weights only: the schedule starts over, so the run differs
    fresh = Trainer(cfg("fresh"), resume="none")
    fresh.init_from(tmp_path / "warm" / "checkpoint.pt")
    assert fresh.progress.epoch == 1
    with pytest.raises(CheckpointError, match="already trained"):
        t.init_from(tmp_path / "warm" / "checkpoint.pt")
    other = Trainer(cfg("other", "model.width=8"), resume="none")
    with pytest.raises(Exception, match="init checkpoint"):
        other.init_from(tmp_path / "warm" / "checkpoint.pt")


def test_select_then_train_from_the_warm_up_equals_one_run(tmp_path):
    """warm-up run (epoch 1) -> `rcs select --epoch 2` on its checkpoint -> `rcs train --init
    <warm-up> --init-continue --coreset <file>`: the same coreset and the same final weights as
    one `rcs train` with that schedule (bitwise, CPU)."""
    from rcs.cli.main import main
    from rcs.errors import CoresetError
    from rcs.selection import Coreset

    rcs_sets = ["selection.method=rcs", "selection.candidate_batch=16", "selection.rounds=2",
                "selection.every=0"]
    sets = [a for kv in TINY + rcs_sets for a in ("--set", kv)]
    assert main(["train", "--out", str(tmp_path / "one"), *sets]) == 0
    assert main(["train", "--out", str(tmp_path / "warm"), "--until-epoch", "1", *sets]) == 0
    coreset = tmp_path / "c.npz"
    assert main(["select", "--checkpoint", str(tmp_path / "warm" / "checkpoint.pt"),
                 "--epoch", "2", "--out", str(coreset)]) == 0
    assert main(["train", "--out", str(tmp_path / "rest"), "--init",
                 str(tmp_path / "warm" / "checkpoint.pt"), "--init-continue", "--coreset",
                 str(coreset), *sets]) == 0
    one = Coreset.load(tmp_path / "one" / "coresets" / "epoch_0002.npz")
    np.testing.assert_array_equal(Coreset.load(coreset).indices, one.indices)
    np.testing.assert_array_equal(
        Coreset.load(tmp_path / "rest" / "coresets" / "epoch_0002.npz").indices, one.indices)
    sels = [r for r in read_jsonl(tmp_path / "rest" / "metrics.jsonl")
            if r.get("event") == "selection"]
    assert [r["epoch"] for r in sels] == [2]  # every=0: never reselected
    summary = json.loads((tmp_path / "rest" / "summary.json").read_text())
    assert summary["init"]["continue_schedule"] and summary["coreset_file"] == str(coreset)
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "rest"))
    # a coreset from another validation split is refused, naming the cause
    from rcs.train.trainer import Trainer

    other = load_config(None, TINY + rcs_sets + [f"out_dir={tmp_path / 'x'}", "seed=5",
                                                  f"selection.coreset={coreset}"])
    with pytest.raises(CoresetError, match="validation"):
        Trainer(other, resume="none").coreset_file(coreset)
