"""log.loggers: CSV, TensorBoard and W&B (offline) receive what metrics.jsonl holds."""

from __future__ import annotations

import csv
import json
import math
import struct
import sys
import time
from pathlib import Path

import pytest

from rcs.config import load_config
from rcs.errors import ConfigError
from rcs.utils.loggers import flatten, scalars
from rcs.utils.metrics import MetricsLogger, read_jsonl
from tests.conftest import tiny

TINY = tiny("data.synthetic_size=64", "data.val_fraction=0.125", "model.head_dim=8",
            "selection.method=rcs", "selection.warmup_epochs=1", "selection.every=1",
            "selection.fraction=0.5", "selection.rounds=2", "selection.candidate_batch=8",
            "selection.val_attack_steps=1")


def as_number(cell: str):
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def check_csv(folder: Path, records: list[dict]) -> None:
    events = sorted({r["event"] for r in records})
    assert sorted(p.stem for p in folder.glob("*.csv")) == events
    for event in events:
        want = [flatten(r) for r in records if r["event"] == event]
        with open(folder / f"{event}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(want)
        for row, rec in zip(rows, want):
            for k, v in rec.items():  # every value, exactly (lists as JSON, None empty)
                if v is None:
                    assert row[k] == "", (event, k)
                    continue
                got = as_number(row[k])
                assert got == v or (isinstance(v, str) and row[k] == v), (event, k)


def check_tensorboard(folder: Path, records: list[dict]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for event in ("step", "epoch", "selection"):
        recs = [r for r in records if r["event"] == event]
        assert recs
        for key in scalars(recs[0]):
            tag = f"{event}/{key}"
            assert tag in tags, tag
            got = [(e.step, e.value) for e in acc.Scalars(tag)]
            want = [(int(r.get("step", r.get("epoch"))), scalars(r)[key]) for r in recs
                    if key in scalars(r)]
            assert [s for s, _ in got] == [s for s, _ in want], tag
            for (_, g), (_, w) in zip(got, want):  # TensorBoard stores float32
                assert g == pytest.approx(w, rel=1e-6, abs=1e-30), tag


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows of an offline W&B run file (LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    rows, buf, i, block = [], b"", 7, 32768
    exited = False
    while i + 7 <= len(data):
        if block - i % block < 7:
            i += block - i % block
            continue
        _, length, kind = struct.unpack("<IHB", data[i:i + 7])
        i += 7
        if kind == 0 and length == 0:
            break
        buf += data[i:i + length]
        i += length
        if kind in (1, 4):  # a full record, or the last fragment of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            t = rec.WhichOneof("record_type")
            if t == "history":
                rows.append({it.key or "/".join(it.nested_key): json.loads(it.value_json)
                             for it in rec.history.item})
            exited |= t == "exit"
    return rows if exited else []


def check_wandb(folder: Path, records: list[dict]) -> None:
    files = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.time() + 60  # wandb's service writes the file just after finish()
    while not (rows := wandb_history(files[0])) and time.time() < deadline:
        time.sleep(0.5)
    assert rows, "the W&B run file never got its exit record"
    want = []
    for r in records:
        s = {f"{r['event']}/{k}": v for k, v in scalars(r).items()}
        if s:
            want.append(s)
    assert len(rows) == len(want)
    for row, w in zip(rows, want):
        assert {k: v for k, v in row.items() if not k.startswith("_")} == w


def test_every_logger_gets_the_values_of_metrics_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = ["jsonl", "csv"]
    have_tb = have_wandb = True
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        have_tb = False
    try:
        import wandb  # noqa: F401
    except ImportError:
        have_wandb = False
    loggers += ["tensorboard"] * have_tb + ["wandb"] * have_wandb
    from rcs.train.trainer import Trainer

    cfg = load_config(None, TINY + [f"out_dir={tmp_path}", f"log.loggers={loggers}"])
    Trainer(cfg, resume="none").fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    sel = [r for r in records if r["event"] == "selection"]
    assert len(sel) == 1 and sum(sel[0]["class_histogram"]) == sel[0]["size"] == 28
    meta = json.loads((tmp_path / "coresets" / "epoch_0002.json").read_text())["meta"]
    assert sel[0]["rd_per_round"] == meta["rd_per_round"] and len(meta["rd_per_round"]) >= 2
    assert sel[0]["timings"] == meta["timings"] and "greedy" in sel[0]["timings"]
    import numpy as np

    from rcs.data import build_dataset

    labels = np.asarray(build_dataset(cfg.data).labels)
    idx = np.load(tmp_path / "coresets" / "epoch_0002.npz")["indices"]
    assert sel[0]["class_histogram"] == np.bincount(labels[idx], minlength=10).tolist()
    assert all("images_per_s" in r for r in records if r["event"] == "epoch")
    check_csv(tmp_path / "csv", records)
    if have_tb:
        check_tensorboard(tmp_path / "tb", records)
    if have_wandb:
        check_wandb(tmp_path, records)
    if not (have_tb and have_wandb):
        pytest.skip(f"checked {loggers}; tensorboard/wandb not installed here")


def test_csv_gains_a_column_and_keeps_old_rows(tmp_path):
    log = MetricsLogger(tmp_path / "metrics.jsonl", loggers=["csv"])
    log.log(event="epoch", epoch=1, loss=0.5)
    log.log(event="epoch", epoch=2, loss=0.25, lr=0.1, timings={"a": 1.5})
    log.close()
    with open(tmp_path / "csv" / "epoch.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["loss"] == "0.5" and rows[0]["lr"] == ""
    assert rows[1]["lr"] == "0.1" and rows[1]["timings.a"] == "1.5"
    # a resumed run appends to the files; a fresh one (no metrics.jsonl) moves them aside
    MetricsLogger(tmp_path / "metrics.jsonl", loggers=["csv"]).log(event="epoch", epoch=3)
    with open(tmp_path / "csv" / "epoch.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    (tmp_path / "metrics.jsonl").unlink()
    MetricsLogger(tmp_path / "metrics.jsonl", loggers=["csv"]).log(event="epoch", epoch=1)
    assert (tmp_path / "csv.prev" / "epoch.csv").is_file()
    with open(tmp_path / "csv" / "epoch.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_scalars_flatten_short_numeric_lists_and_drop_the_rest():
    rec = {"time": 1.0, "event": "selection", "size": 3, "hist": [1, 2], "long": [0] * 100,
           "timings": {"greedy": 0.5}, "method": "rcs", "nan": math.nan, "flag": True}
    assert scalars(rec) == {"size": 3.0, "hist.0": 1.0, "hist.1": 2.0, "timings.greedy": 0.5}


@pytest.mark.parametrize("name,hint", [("wandb", "pip install 'rcs-toolkit[wandb]'"),
                                       ("tensorboard", "pip install 'rcs-toolkit[tensorboard]'")])
def test_a_missing_logger_package_names_the_install_command(tmp_path, monkeypatch, name, hint):
    monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    if name == "tensorboard":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"log.loggers has .* install it") as e:
        MetricsLogger(tmp_path / "metrics.jsonl", loggers=[name])
    assert hint in str(e.value)
    with pytest.raises(ConfigError, match="not one of jsonl, csv, tensorboard, wandb"):
        load_config(None, ["log.loggers=[mlflow]"])


def test_fine_tuning_and_select_log_through_the_configured_loggers(tmp_path):
    """SLF epochs and the evaluation's accuracies reach csv/ too, equal to metrics.jsonl; `rcs
    select` logs its selection (size, class histogram) beside the coreset."""
    from test_export import pretraining_checkpoint

    from rcs.cli.main import main

    path, _, _ = pretraining_checkpoint(tmp_path)
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(path), "--mode", "slf", "--attacks", "clean",
                 "--out", str(out), "--set", "finetune.slf.epochs=1",
                 "--set", "log.loggers=[csv]", "--set", "eval.limit=32"]) == 0
    records = read_jsonl(out / "slf" / "metrics.jsonl")
    assert [r["event"] for r in records] == ["epoch", "eval"]
    results = json.loads((out / "slf" / "results.json").read_text())
    assert records[1]["SA"] == results["headline"]["SA"]
    check_csv(out / "slf" / "csv", records)
    assert main(["select", "--checkpoint", str(path), "--selector", "random", "--fraction",
                 "0.25", "--out", str(tmp_path / "sel" / "core.npz"),
                 "--set", "log.loggers=[csv]"]) == 0
    recs = read_jsonl(tmp_path / "sel" / "core.metrics.jsonl")
    size = json.loads((tmp_path / "sel" / "core.json").read_text())["size"]
    assert recs[0]["event"] == "selection" and recs[0]["size"] == size
    assert sum(recs[0]["class_histogram"]) == size
    check_csv(tmp_path / "sel" / "core.metrics-csv", recs)
