"""One tiny CPU run per added method through the CLI: pretraining with the RCS selector at
k = 0.2, then SLF fine-tuning and PGD-20 evaluation of the exported classifier.

Each takes about 1-5 s on 2 CPU cores (width-4 ResNet, 96 synthetic images, 2 epochs).
"""

from __future__ import annotations

import json
import math

import pytest

from rcs.cli.main import main
from tests.conftest import sets, tiny

COMMON = tiny("model.head_hidden=16", "train.lr_warmup_epochs=1", "selection.method=rcs",
              "selection.fraction=0.2", "selection.warmup_epochs=1", "selection.every=1",
              "selection.rounds=2", "selection.candidate_batch=32", "selection.sketch_dim=64",
              "selection.val_attack_steps=1")
EXTRA = {
    "advcl": ["train.advcl.clusters=[2,10,50]", "train.advcl.kmeans_iters=5",
              "train.advcl.pseudo_every=1"],
    "rocl": [],
    "byorl": [],
    "tikhonov": [],
}


def run_method(tmp_path, method: str, label_fraction: float | None = None) -> dict:
    run = tmp_path / method
    cfg = f"configs/tiny/cifar10_{method}_rcs.yaml"
    assert main(["train", "-c", cfg, "--out", str(run), "--resume", "none",
                 *sets(COMMON + EXTRA[method])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == method and summary["selector"] == "rcs"
    assert summary["selections"] == 1 and summary["fraction"] == 0.2
    coreset = json.loads((run / "coresets" / "epoch_0002.json").read_text())
    n_cand = 96 - round(0.1 * 96)
    assert coreset["size"] == round(0.2 * n_cand) and coreset["meta"]["method"] == "rcs"
    assert coreset["meta"]["objective"] == "acl"  # RCS's ACL per-sample loss in the method's head
    ft = ["finetune", "--checkpoint", str(run / "checkpoint.pt"), "--mode", "slf",
          "--attacks", "clean,pgd20", "--set", "finetune.slf.epochs=1",
          "--set", "finetune.slf.batch_size=32"]
    if label_fraction is not None:
        ft += ["--label-fraction", str(label_fraction)]
    assert main(ft) == 0
    name = "finetune" if label_fraction is None else f"finetune-labels{label_fraction:g}"
    res = json.loads((run / name / "slf" / "results.json").read_text())
    assert res["pretrain"]["method"] == method
    ev = res["eval"]
    assert ev["pgd20"]["steps"] == 20 and ev["pgd20"]["eps"] == pytest.approx(8 / 255)
    assert 0.0 <= ev["pgd20"]["accuracy"] <= ev["clean"]["accuracy"] + 1e-9 <= 1.0 + 1e-9
    return res


def test_rocl_rcs_slf_pgd20_with_label_fraction(tmp_path):
    res = run_method(tmp_path, "rocl", label_fraction=0.5)
    assert res["branch"] == "normal"  # the single BN branch is exported
    assert res["label_fraction"] == 0.5 and res["n_train"] == 48  # half of the 96 train images


@pytest.mark.parametrize("method", ["advcl", "byorl", "tikhonov"])
def test_method_rcs_slf_pgd20(tmp_path, method):
    res = run_method(tmp_path, method)
    assert res["branch"] == ("pgd" if method == "advcl" else "normal")
    if method == "advcl":
        assert res["settings"]["protocol"] == "advcl"
        assert res["settings"]["milestones"] == [15, 20]


@pytest.mark.slow
def test_methods_under_ddp_two_gloo_ranks(tmp_path):
    """2 CPU ranks: AdvCL (pseudo-labels from rank 0, global SupCon negatives), RoCL and BYORL
    finish with sharded RCS selection; the Tikhonov penalty refuses to run under DDP."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RCS_QUIET="1")
    port = 29700 + os.getpid() % 500
    for i, method in enumerate(["advcl", "rocl", "byorl", "tikhonov"]):
        out = tmp_path / method
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={port + i}", "-m", "rcs.cli.main", "train", "-c",
               f"configs/tiny/cifar10_{method}_rcs.yaml", "--out", str(out),
               *sets(COMMON + EXTRA[method])]
        res = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if method == "tikhonov":
            assert res.returncode != 0 and b"one process only" in res.stderr
            continue
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["selections"] == 1


# ------------------------------------------------------------------ the loss falls on a fixed batch
def fixed_batch_losses(method: str, steps: int = 12, lr: float = 0.05,
                       forward_wrapper=None) -> list[float]:
    """The method's loss on the same 16 images, the same views and the same attack start at each
    of ``steps`` SGD steps (momentum 0.9) over the model and the method's extra modules:
    a working method fits the batch, so its loss falls."""
    import numpy as np
    import torch

    from tests.conftest import method_setup

    cfg, m, model, extras, fw, ds, aug = method_setup(method)
    m.on_epoch_start(1, aug)
    model.train()
    params = [p for p in [*model.parameters(), *extras.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    idx = np.arange(16)
    x, _ = ds.get_batch(idx)
    forward = fw if forward_wrapper is None else forward_wrapper(fw)
    losses = []
    for k in range(steps):
        m.prepare_batch(idx)
        out = m.step(forward, model, x, None, aug, torch.Generator().manual_seed(0))
        losses.append(float(out.loss.detach()))
        opt.zero_grad()
        if out.loss.requires_grad:
            out.loss.backward()
        opt.step()
        m.after_step(k / steps)
    return losses


def loss_falls(losses: list[float], margin: float = 0.1) -> bool:
    """The mean loss of the last three steps is at least ``margin`` (relative) below the first."""
    last = sum(losses[-3:]) / 3
    return last < (1 - margin) * losses[0]


class DetachedForward:
    """A broken method's forward: its outputs carry no gradient to the model."""

    def __init__(self, fw):
        self.fw = fw

    def __call__(self, calls):
        return [o.detach() if hasattr(o, "detach") else o for o in self.fw(calls)]


@pytest.mark.parametrize("method", ["advcl", "rocl", "byorl", "tikhonov"])
def test_each_methods_loss_falls_on_a_fixed_batch(method):
    losses = fixed_batch_losses(method)
    assert all(math.isfinite(v) for v in losses), losses
    assert loss_falls(losses), (method, losses)


@pytest.mark.parametrize("method", ["rocl", "byorl"])
def test_a_method_with_detached_gradients_fails_the_loss_check(method):
    losses = fixed_batch_losses(method, forward_wrapper=DetachedForward)
    assert not loss_falls(losses), (method, losses)
