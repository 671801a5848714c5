"""End to end through the CLI: pretrain -> `rcs finetune` -> `rcs eval` -> `rcs report`.

The fast test runs tiny models on the synthetic dataset; the slow one pretrains on the real
CIFAR-10 subset shipped in ../shared.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from rcs.cli.main import main
from tests.conftest import sets, tiny

TINY = tiny("train.lr=0.5", "train.lr_warmup_epochs=1", "selection.warmup_epochs=1",
            "selection.every=1", "selection.fraction=0.5")
FT = ["--set", "finetune.slf.epochs=2", "--set", "finetune.slf.batch_size=32",
      "--set", "finetune.slf.lr=0.05"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def write_cifar_c(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    """CIFAR-10-C layout from a test set: <name>.npy [5 N, H, W, 3] uint8 and labels.npy [5 N]."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "labels.npy", np.tile(labels, 5))
    for name in names:
        sev = [np.clip(images.astype(np.int16) + rng.integers(-12 * s, 12 * s + 1, images.shape),
                       0, 255).astype(np.uint8) for s in range(1, 6)]
        np.save(root / f"{name}.npy", np.concatenate(sev))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny pretraining runs (random coreset, full data), each fine-tuned with SLF."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for sel in ("random", "full"):
        run = base / sel
        assert main(["train", "--out", str(run)] + sets(TINY + [f"selection.method={sel}"])) == 0
        assert main(["finetune", "--checkpoint", str(run / "checkpoint.pt"), "--mode", "slf",
                     *FT]) == 0
        out[sel] = run
    return out


def test_finetune_writes_classifier_and_results(runs):
    ft = runs["random"] / "finetune"
    res = json.loads((ft / "slf" / "results.json").read_text())
    assert res["settings"]["epochs"] == 2 and res["settings"]["milestones"] == [10, 20]
    assert res["settings"]["protocol"] == "acl"
    assert len(res["losses"]) == 2 and res["pretrain"]["method"] == "acl"
    ev = res["eval"]
    assert ev["pgd20"]["steps"] == 20 and ev["pgd20"]["eps"] == pytest.approx(8 / 255)
    assert 0.0 <= ev["pgd20"]["accuracy"] <= 1.0 and ev["clean"]["n"] == 24
    assert res["headline"]["SA"] == pytest.approx(100 * ev["clean"]["accuracy"])
    assert (ft / "slf" / "classifier.pt").is_file() and (ft / "results.md").is_file()
    recs = [json.loads(x) for x in (ft / "slf" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if r["event"] == "epoch"] == [1, 2]
    assert recs[-1]["event"] == "eval" and recs[-1]["SA"] == res["headline"]["SA"]


def test_eval_cli_with_corruptions_and_missing_autoattack(runs, tmp_path, monkeypatch, capsys):
    import rcs.evaluate.autoattack as bridge
    from rcs.config import load_config
    from rcs.data import build_dataset

    test = build_dataset(load_config(None, TINY).data, split="test")
    write_cifar_c(tmp_path / "c10c", test.images, test.labels, ["fog", "contrast"])
    monkeypatch.setattr(bridge, "PACKAGES", ("rcs_no_such_autoattack_package",))
    clf = runs["full"] / "finetune" / "slf" / "classifier.pt"
    out = tmp_path / "ev"
    assert main(["eval", "--checkpoint", str(clf), "--attacks",
                 "clean,pgd20,autoattack,corruptions", "--n-ex", "8", "--corruptions-root",
                 str(tmp_path / "c10c"), "--set", "eval.corruptions=[fog,contrast]",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| corruptions" in printed and "not installed" in printed
    res = json.loads((out / "eval.json").read_text())
    assert res["autoattack"]["available"] is False
    c = res["corruptions"]
    assert set(c["per_corruption"]) == {"fog", "contrast"} and len(c["per_severity"]) == 5
    assert c["accuracy"] == pytest.approx(np.mean(list(c["per_severity"].values())))
    assert res["clean"]["accuracy"] == json.loads(
        (clf.parent / "results.json").read_text())["eval"]["clean"]["accuracy"]
    assert (out / "eval.md").read_text().startswith("| evaluation")
    # without --out, a later evaluation is merged into the fine-tuning results (for the report)
    assert main(["eval", "--checkpoint", str(clf), "--attacks", "corruptions",
                 "--corruptions-root", str(tmp_path / "c10c"),
                 "--set", "eval.corruptions=[fog,contrast]"]) == 0
    merged = json.loads((clf.parent / "results.json").read_text())
    assert merged["headline"]["CA"] == pytest.approx(100 * c["accuracy"])
    assert merged["headline"]["SA"] == pytest.approx(100 * res["clean"]["accuracy"])


def test_report_table_and_plots_from_real_runs(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs["random"]), str(runs["full"]), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| run "))
    table = [ln for ln in lines[start:start + 4] if ln.startswith("| ")]
    assert "SLF SA" in table[0] and "SLF RA PGD-20" in table[0] and "pretrain (s)" in table[0]
    body = {ln.split("|")[1].strip(): ln for ln in table[1:]}
    assert set(body) == {"random", "full"}
    for name, run in runs.items():
        res = json.loads((run / "finetune" / "slf" / "results.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        cells = [c.strip() for c in body[name].split("|")[1:-1]]
        assert f"{res['headline']['SA']:.2f}" in cells
        assert f"{res['headline']['RA_pgd20']:.2f}" in cells
        assert f"{summary['train_seconds'] + summary['select_seconds']:.2f}" in cells
    for png in ("robust_vs_time.png", "training_curves.png"):
        w, h = png_size(out / png)
        assert w > 300 and h > 200
        assert f"]({png})" in md
    assert "report.md" in capsys.readouterr().out


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not an rcs run folder" in capsys.readouterr().err


def test_cifar10_subset_pretrain_slf_eval_report(cifar10_subset_path, tmp_path):
    """Real CIFAR-10 images: tiny ACL pretraining with an RCS coreset, SLF, PGD-20, report."""
    run = tmp_path / "c10"
    data = ["data.name=npz", f"data.root={cifar10_subset_path}", "data.limit=768",
            "data.val_fraction=0.05", "model.width=8", "model.blocks=[1,1]", "model.head_dim=32",
            "train.batch_size=64", "train.epochs=2", "train.lr=0.5", "train.lr_warmup_epochs=1",
            "train.attack.steps=2", "train.channels_last=false", "selection.method=rcs",
            "selection.warmup_epochs=1", "selection.every=1", "selection.fraction=0.3",
            "selection.rounds=4", "selection.candidate_batch=64", "selection.sketch_dim=256",
            "device=cpu"]
    assert main(["train", "--out", str(run)] + sets(data)) == 0
    assert main(["finetune", "--checkpoint", str(run / "checkpoint.pt"), "--mode", "slf",
                 "--set", "finetune.slf.epochs=3", "--set", "finetune.slf.batch_size=128",
                 "--set", "finetune.slf.lr=0.1", "--set", "eval.limit=512"]) == 0
    res = json.loads((run / "finetune" / "slf" / "results.json").read_text())
    ev = res["eval"]
    assert ev["clean"]["n"] == 512 and res["train_split"].endswith("train")
    assert ev["clean"]["accuracy"] > 0.14  # above chance (10 classes) after a tiny run
    assert ev["pgd20"]["accuracy"] <= ev["clean"]["accuracy"]
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert "SLF RA PGD-20" in (tmp_path / "report" / "report.md").read_text()
