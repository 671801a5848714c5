"""One tiny CPU run per survey-family method through the CLI (the pattern of
``test_methods_e2e.py``): pretraining with the RCS selector at k = 0.2 (the method's own
selection objective), SLF fine-tuning and PGD-20 evaluation of the exported classifier; RUSH
also certifies the smoothed classifier with ``rcs eval --attacks smoothing``; and ACL with the
layer-wise contrastive option."""

from __future__ import annotations

import json

import pytest

from rcs.cli.main import main
from tests.conftest import FAMILY_METHODS
from tests.test_methods_e2e import COMMON, sets

# smaller than test_methods_e2e's runs (64 images, 56 candidates, an 11-image coreset)
LEAN = [kv for kv in COMMON if not kv.startswith(("data.synthetic_size", "data.val_fraction"))]
LEAN += ["data.synthetic_size=64", "data.val_fraction=0.125"]
N_CAND = 64 - 8

EXTRA = {"mochi": ["train.mochi.hard=8", "train.mochi.mix=8", "train.mochi.query_mix=4"],
         "adco": ["train.memory.size=32"], "caco": ["train.memory.size=32"]}
SINGLE_BN = {"ifm", "hcl", "mochi", "arocl", "adco", "caco", "rush"}


def pretrain_finetune(tmp_path, method: str, config: str, extra: list[str]) -> tuple:
    run = tmp_path / method
    assert main(["train", "-c", config, "--out", str(run), "--resume", "none",
                 *sets(LEAN + extra)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selector"] == "rcs" and summary["selections"] == 1
    coreset = json.loads((run / "coresets" / "epoch_0002.json").read_text())
    assert coreset["size"] == round(0.2 * N_CAND)
    assert coreset["meta"]["method"] == "rcs" and coreset["meta"]["objective"] == "acl"
    assert main(["finetune", "--checkpoint", str(run / "checkpoint.pt"), "--mode", "slf",
                 "--attacks", "clean,pgd20", "--set", "finetune.slf.epochs=1",
                 "--set", "finetune.slf.batch_size=32"]) == 0
    res = json.loads((run / "finetune" / "slf" / "results.json").read_text())
    ev = res["eval"]
    assert ev["pgd20"]["steps"] == 20 and ev["pgd20"]["n"] == ev["clean"]["n"] > 0
    # (a near-random tiny model: PGD-20 on CE need not lower its accuracy on 24 images)
    assert 0.0 <= ev["pgd20"]["accuracy"] <= 1.0 and 0.0 <= ev["clean"]["accuracy"] <= 1.0
    return run, summary, res


@pytest.mark.parametrize("method", FAMILY_METHODS)
def test_family_method_rcs_slf_pgd20(tmp_path, method):
    config = f"configs/tiny/cifar10_{method}_rcs.yaml"
    run, summary, res = pretrain_finetune(tmp_path, method, config, EXTRA.get(method, []))
    assert summary["method"] == method and res["pretrain"]["method"] == method
    assert res["branch"] == ("normal" if method in SINGLE_BN else "pgd")
    if method == "rush":
        clf = run / "finetune" / "slf" / "classifier.pt"
        assert main(["eval", "--checkpoint", str(clf), "--attacks", "smoothing",
                     "--sigma", "0.25", "--radii", "0,0.1,0.25"]) == 0
        ev = json.loads((run / "finetune" / "slf" / "eval.json").read_text())["smoothing"]
        cert = ev["certified_accuracy"]
        assert list(cert) == ["0", "0.1", "0.25"] and ev["sigma"] == 0.25
        assert cert["0.25"] <= cert["0.1"] <= cert["0"] <= 1.0
        assert ev["n"] == 16 and ev["n_samples"] == 200  # all 16 test images, the tiny budget


def test_layerwise_acl_rcs_slf_pgd20(tmp_path):
    run, summary, res = pretrain_finetune(
        tmp_path, "acl", "configs/tiny/cifar10_acl_rcs.yaml",
        ["train.layerwise.stages=[1]", "train.layerwise.weights=[0.5]"])
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r.get("event") == "step"]
    assert steps and all("layer1" in r and "loss_final" in r for r in steps)
    assert all(r["loss"] == pytest.approx(r["loss_final"] + 0.5 * r["layer1"], rel=1e-5)
               for r in steps)


@pytest.mark.slow
def test_family_under_ddp_two_gloo_ranks(tmp_path):
    """2 CPU ranks with sharded RCS selection: AdCo and CaCo (global queries and keys, the same
    memory update on every rank), MoCHi (global hard negatives) and ACL with the layer-wise
    heads inside the DDP forward all finish."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RCS_QUIET="1")
    port = 29200 + os.getpid() % 500
    runs = [("adco", EXTRA["adco"]), ("caco", EXTRA["caco"]), ("mochi", EXTRA["mochi"]),
            ("acl", ["train.layerwise.stages=[1]", "train.layerwise.weights=[0.5]"])]
    for i, (method, extra) in enumerate(runs):
        out = tmp_path / method
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={port + i}", "-m", "rcs.cli.main", "train", "-c",
               f"configs/tiny/cifar10_{method}_rcs.yaml", "--out", str(out),
               *sets(LEAN + extra)]
        res = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["selections"] == 1
