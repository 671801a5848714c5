"""Atomic, safe checkpoints: a crash mid-write keeps the old file; bad files fail loudly."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from rcs.errors import CheckpointError
from rcs.utils.checkpoint_io import (
    coreset_from_state,
    coreset_to_state,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from rcs.utils.seed import rng_state


def test_roundtrip_with_rng_and_coreset(tmp_path):
    model = nn.Linear(3, 2)
    state = {"model": model.state_dict(), "progress": {"epoch": 3, "step": 17}, "rng": rng_state(),
             "coreset": coreset_to_state([5, 1, 9], {"fraction": 0.2}), "config_json": "{}"}
    path = save_checkpoint(tmp_path / "ck.pt", state)
    got = load_checkpoint(path)
    assert got["progress"] == {"epoch": 3, "step": 17}
    assert torch.equal(got["model"]["weight"], model.weight.detach())
    idx, meta = coreset_from_state(got["coreset"])
    assert idx.tolist() == [5, 1, 9] and meta == {"fraction": 0.2}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_exception_mid_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"value": torch.tensor([1.0])})

    def broken_save(obj, f, *a, **k):  # save_checkpoint hands torch an open file
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"value": torch.tensor([2.0])})
    monkeypatch.undo()
    assert load_checkpoint(path)["value"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_kill_mid_write_keeps_previous(tmp_path):
    """SIGKILL a process while it writes a large checkpoint: the old one must stay loadable."""
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"value": torch.tensor([1.0])})
    code = textwrap.dedent(f"""
        import torch, sys
        from rcs.utils.checkpoint_io import save_checkpoint
        big = {{"value": torch.tensor([2.0]), "blob": torch.zeros(60_000_000)}}
        print("start", flush=True)
        while True:
            save_checkpoint({str(path)!r}, big)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"start"
    # wait until a temp file is being written, then kill
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(path)  # either the old or a complete new file, never a torn one
    assert state["value"].item() in (1.0, 2.0)


def test_corrupt_truncated_and_foreign_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.ones(1000)})
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is corrupt, truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is corrupt, truncated"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an rcs checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_refuses_to_unpickle_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "rcs-checkpoint", "x": _Evil()}, tmp_path / "evil.pt",
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="refuses to unpickle|never unpickles"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"format": "rcs-checkpoint", "x": _Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not (tmp_path / "EVIL_RAN").exists()


def test_strict_loading_names_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = model.state_dict()
    missing = {k: v for k, v in sd.items() if k != "1.running_mean"}
    with pytest.raises(CheckpointError, match=r"1 missing keys: 1.running_mean"):
        load_state_dict_strict(model, missing)
    extra = dict(sd, **{"2.weight": torch.ones(1)})
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: 2.weight"):
        load_state_dict_strict(model, extra)
    wrong = dict(sd, **{"0.weight": torch.ones(4, 2)})
    with pytest.raises(CheckpointError, match=r"shape mismatches: 0.weight"):
        load_state_dict_strict(model, wrong)
    load_state_dict_strict(model, sd)
