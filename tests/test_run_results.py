"""The one reader of run folders (rcs.report.collect) as used by `rcs report` and sweeps."""

from __future__ import annotations

import json

import pytest

from rcs.errors import DataError
from rcs.report.collect import read_run_config, read_summary


def test_read_summary_missing_broken_and_strict(tmp_path):
    assert read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("{not json")
    assert read_summary(tmp_path) is None
    with pytest.raises(DataError, match="summary.json"):
        read_summary(tmp_path, strict=True)
    (tmp_path / "summary.json").write_text(json.dumps({"method": "acl", "fraction": 0.2}))
    assert read_summary(tmp_path, strict=True) == {"method": "acl", "fraction": 0.2}


def test_read_run_config(tmp_path):
    assert read_run_config(tmp_path) == {}
    (tmp_path / "config.yaml").write_text("seed: 3\ntrain: {epochs: 2}\n")
    assert read_run_config(tmp_path) == {"seed": 3, "train": {"epochs": 2}}
    (tmp_path / "config.yaml").write_text("- a list\n")
    assert read_run_config(tmp_path) == {}


def test_sweep_rows_and_report_records_read_the_same_summary(tmp_path):
    from rcs.launch.collect import collect as collect_sweep
    from rcs.report.collect import collect_run

    run = tmp_path / "r"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(
        {"method": "dynacl", "selector": "random", "fraction": 0.3, "epochs": 4,
         "train_seconds": 2.0, "select_seconds": 0.5}))
    (run / "config.yaml").write_text("seed: 11\n")
    row = collect_sweep([run])["rows"][0]
    rec = collect_run(run)[0]
    assert (row["method"], row["selector"], row["fraction"], row["seed"]) == \
        (rec.method, rec.selector, rec.fraction, rec.seed) == ("dynacl", "random", 0.3, 11)
    assert rec.pretrain_seconds == 2.5 and row["train_seconds"] == 2.0
