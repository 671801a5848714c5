"""Nothing silently wrong (issue 15): a run folder records only what ran, every bad input gets a
clear one-line error (or a visible warning), results stay complete and readable.

The CLI probes call ``rcs.cli.main.main`` in-process (exit code + captured stderr); only the
probes that need a second process (a lock holder, a file size limit) start one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from rcs.cli.main import main
from rcs.config import load_config
from rcs.errors import ConfigError, DataError, RCSWarning
from rcs.utils.checkpoint_io import load_checkpoint
from rcs.utils.metrics import read_jsonl
from tests.conftest import tiny

TINY = tiny("train.lr=0.5", "train.lr_warmup_epochs=1", "selection.method=random",
            "selection.warmup_epochs=1", "selection.every=1", "selection.fraction=0.5")
FT = ["finetune.slf.epochs=1", "finetune.slf.batch_size=32", "finetune.alf.epochs=1",
      "finetune.alf.batch_size=32", "finetune.attack.steps=1"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RCS_QUIET="1",
           PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def sets(*kv: str) -> list[str]:
    return [a for x in kv for a in ("--set", x)]


def train(out: Path, *extra: str, flags: tuple[str, ...] = ()) -> int:
    return main(["train", "--out", str(out), *flags, *sets(*TINY, *extra)])


def error_lines(stderr: str) -> str:
    """stderr without the run header every command prints (``[rcs <cmd>] threads: ...``)."""
    return "\n".join(ln for ln in stderr.strip().splitlines()
                     if not re.match(r"\[rcs \w+\] threads:", ln))


def one_line_error(capsys: pytest.CaptureFixture, rc: int, pattern: str) -> str:
    """Exit status 2, exactly one stderr line, no traceback, matching ``pattern``."""
    err = error_lines(capsys.readouterr().err)
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err
    return err


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ------------------------------------------------------------------------------ 1. run folders
def test_resume_refuses_settings_that_change_the_result(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    before = {n: (out / n).read_bytes() for n in ("config.yaml", "summary.json", "checkpoint.pt")}
    capsys.readouterr()
    err = one_line_error(capsys, train(out, "train.method=air", "train.lr=0.3"),
                         r"train\.method acl -> air; train\.lr 0\.5 -> 0\.3")
    assert "--resume none" in err and "--out NEW_DIR" in err and "finished, 2 epochs" in err
    # nothing in the folder now describes a run that never happened
    assert {n: (out / n).read_bytes() for n in before} == before
    one_line_error(capsys, train(out, "train.attack.steps=5"), r"train\.attack\.steps 1 -> 5")


def test_resume_none_keeps_the_old_run_aside(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    (out / "finetune").mkdir()
    (out / "finetune" / "results.json").write_text("{}")  # results of the old checkpoint
    old_ckpt = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert train(out, "train.lr=0.3", flags=("--resume", "none")) == 0
    assert "the previous run there was moved to" in capsys.readouterr().out
    (prev,) = list((out / "previous").iterdir())
    assert (prev / "checkpoint.pt").read_bytes() == old_ckpt
    assert (prev / "finetune" / "results.json").is_file() and not (out / "finetune").exists()
    assert yaml.safe_load((prev / "config.yaml").read_text())["train"]["lr"] == 0.5
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.3
    assert not any(r["event"] == "resume" for r in read_jsonl(out / "metrics.jsonl"))
    assert load_checkpoint(out / "checkpoint.pt")["complete"]
    # continuing another folder's checkpoint here also keeps the run found here aside
    from rcs.train.trainer import Trainer

    other = tmp_path / "other"
    Trainer(load_config(None, TINY + ["train.lr=0.3", f"out_dir={other}"]),
            resume="none").fit(until_epoch=1)
    assert train(out, "train.lr=0.3", flags=("--resume", str(other / "checkpoint.pt"))) == 0
    assert len(list((out / "previous").iterdir())) == 2
    recs = read_jsonl(out / "metrics.jsonl")
    assert recs[0]["event"] == "resume" and recs[0]["changed"] == {
        "out_dir": [str(other), str(out)]}


def test_resume_records_neutral_changes_and_says_where_it_continues(tmp_path, capsys):
    from rcs.train.trainer import Trainer

    out = tmp_path / "run"
    Trainer(load_config(None, TINY + [f"out_dir={out}"]), resume="none").fit(until_epoch=1)
    capsys.readouterr()
    assert train(out, "train.log_every=2", "train.checkpoint_every_steps=3") == 0
    stdout = capsys.readouterr().out
    assert re.search(r"\[train\] resuming .*checkpoint\.pt: continuing at the start of epoch "
                     r"2/2 \(step 6, 0 selection", stdout), stdout
    rec = [r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "resume"][-1]
    assert rec["changed"] == {"train.log_every": [1, 2], "train.checkpoint_every_steps": [0, 3]}
    assert rec["threads"] == torch.get_num_threads() and rec["device"] == "cpu"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["log_every"] == 2


def test_selector_settings_may_change_only_before_the_first_selection(tmp_path, capsys):
    from rcs.train.trainer import Trainer

    out = tmp_path / "run"
    Trainer(load_config(None, TINY + [f"out_dir={out}"]), resume="none").fit(until_epoch=1)
    capsys.readouterr()
    # full-data warm-up only so far (what `rcs compare` shares between selectors)
    one_line_error(capsys, train(out, "selection.method=full"),
                   r"selection\.method random -> full")
    assert train(out, "selection.seed=3") == 0
    capsys.readouterr()
    one_line_error(capsys, train(out, "selection.seed=4"), r"selection\.seed 3 -> 4")


def test_two_writers_of_one_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    hold = ("import sys; from rcs.utils.run_guard import lock_run; lock_run(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()")

    def holder() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=ENV)
        assert p.stdout.readline().strip() == b"locked"
        return p

    proc = holder()
    one_line_error(capsys, train(out), rf"'{re.escape(str(out))}' is being written by another "
                   rf"rcs process \(pid {proc.pid} on host .*delete .*\.rcs-lock$")
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()
    proc.stdin.close()
    assert proc.wait(60) == 0
    assert not (out / ".rcs-lock").exists()  # released when the holder exits
    assert train(out) == 0 and not (out / ".rcs-lock").exists()
    proc = holder()  # killed without a chance to clean up: its lock is stale and taken over
    proc.kill()
    proc.wait(60)
    assert (out / ".rcs-lock").exists()
    capsys.readouterr()
    assert train(out) == 0
    assert "finished run" in capsys.readouterr().out


# ------------------------------------------------------------------------------ 2. silent values
def test_values_that_silently_changed_results_are_refused_or_warned(tmp_path, capsys):
    one_line_error(capsys, main(["config", "show", *sets("train.attack.eps=8")]),
                   r"train\.attack\.eps=8 is larger than 1.*did you mean 8/255\?")
    one_line_error(capsys, main(["config", "show", *sets("finetune.attack.alpha=2")]),
                   r"finetune\.attack\.alpha=2 .*did you mean 2/255\?")
    assert main(["config", "show", *sets("train.attack.eps=0.5")]) == 0
    assert "warning: train.attack.eps=0.5 is 127.5/255" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    one_line_error(capsys, main(["config", "show", "-c", str(empty)]),
                   r"config file '.*empty\.yaml' is empty .*leave out --config")
    one_line_error(capsys, main(["config", "show", *sets("train.method=nope")]),
                   r"unknown train\.method 'nope'. Available: aacl, acl")
    one_line_error(capsys, main(["config", "show", *sets("selection.method=rsc")]),
                   r"unknown selection\.method 'rsc'. Did you mean 'rcs'\?")


def _npz(path: Path, labels: np.ndarray, **more: np.ndarray) -> Path:
    x = np.random.default_rng(0).integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=labels, **more)
    return path


def test_npz_labels_are_checked(tmp_path):
    from rcs.config import DataConfig
    from rcs.data import build_dataset

    def read(path: Path):
        return build_dataset(DataConfig(name="npz", root=str(path)))

    y = np.arange(60) % 10
    stray = y.copy()
    stray[0] = 10
    with pytest.warns(RCSWarning, match=r"class 10 has 1 image\(s\) while the median class has "
                                        r"6; a stray label gives the dataset 11 classes"):
        assert read(_npz(tmp_path / "a.npz", stray)).num_classes == 11
    names = np.array([f"c{i}" for i in range(10)])
    with pytest.raises(DataError, match=r"1 label\(s\) >= 10 \(e\.g\. 10 at index 0\), but the "
                                        r"file names 10 classes"):
        read(_npz(tmp_path / "b.npz", stray, label_names=names))
    with pytest.warns(RCSWarning, match=r"class\(es\) \[0\] have no image.*1-based labels"):
        read(_npz(tmp_path / "c.npz", y + 1))
    neg = y.copy()
    neg[3] = -1
    with pytest.raises(DataError, match=r"1 negative label\(s\) \(e\.g\. -1 at index 3\)"):
        read(_npz(tmp_path / "d.npz", neg))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny finished pretraining run (its checkpoint)."""
    out = tmp_path_factory.mktemp("pre") / "run"
    assert train(out) == 0
    return out / "checkpoint.pt"


def test_finetune_refuses_ignored_model_settings_and_too_few_labels(pretrained, tmp_path,
                                                                    capsys):
    from rcs.data import ImageDataset
    from rcs.finetune.runner import check_finetune_labels

    ck = str(pretrained)
    capsys.readouterr()
    one_line_error(capsys, main(["finetune", "--checkpoint", ck, "--out", str(tmp_path / "a"),
                                 *sets("model.width=16")]),
                   r"model\.width=16 \(checkpoint: 4\): fine-tuning uses the architecture of "
                   r"the pretrained checkpoint")
    assert not (tmp_path / "a" / "config.yaml").exists()
    one_line_error(capsys, main(["finetune", "--checkpoint", ck, "--out", str(tmp_path / "b"),
                                 "--label-fraction", "0.001"]),
                   r"finetune\.label_fraction=0\.001 keeps 1 of 96 images, fewer than one per "
                   r"class \(10 classes\); use at least 0\.11")
    unlabelled = ImageDataset(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, -1, 1]), "u")
    with pytest.raises(DataError, match=r"1 of 4 training images .* have no label \(-1\)"):
        check_finetune_labels(unlabelled, "train")
    # what is recorded is what ran: the classifier's class count comes from the data
    assert main(["finetune", "--checkpoint", ck, "--out", str(tmp_path / "c"), "--attacks",
                 "none", *sets(*FT, "model.num_classes=7")]) == 0
    assert yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["model"][
        "num_classes"] == 10


# ------------------------------------------------------------------------------ 3. tracebacks
def test_cli_errors_that_were_tracebacks_are_one_line(pretrained, tmp_path, capsys):
    from rcs.config import ModelConfig
    from rcs.models.pretrained import build_classifier, save_classifier

    clf = tmp_path / "classifier.pt"
    mcfg = ModelConfig(width=4, blocks=[1])
    save_classifier(clf, build_classifier(mcfg, 10), mcfg, 10, {})
    one_line_error(capsys, main(["select", "--checkpoint", str(clf), "--out",
                                 str(tmp_path / "c.npz")]),
                   r"is a fine-tuned classifier; `rcs select` needs the pretraining checkpoint")
    one_line_error(capsys, main(["config", "show", *sets("train.attack.eps=8/0")]),
                   r"train\.attack\.eps='8/0' divides by zero")
    one_line_error(capsys, train(tmp_path / "t", "device=tpu"),
                   r"device='tpu' is not one of auto, cpu, cuda, cuda:N, mps")
    empty = tmp_path / "empty.npz"
    np.savez(empty, x_train=np.zeros((0, 8, 8, 3), np.uint8), y_train=np.zeros(0, np.int64))
    one_line_error(capsys, train(tmp_path / "e", "data.name=npz", f"data.root={empty}"),
                   r"empty\.npz\['x_train'\] holds no images")
    neg = _npz(tmp_path / "neg.npz", np.array([0, 1, 2, -1] * 6))
    one_line_error(capsys, main(["finetune", "--checkpoint", str(pretrained), "--out",
                                 str(tmp_path / "f"), "--dataset", "npz",
                                 *sets(f"data.root={neg}")]),
                   r"negative label\(s\) \(e\.g\. -1 at index 3\)")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    err = one_line_error(capsys, main(["select", "--checkpoint", str(junk), "--out",
                                       str(tmp_path / "c.npz")]),
                         r"junk\.pt' is corrupt, truncated, or not a torch file \(\w+: .*\); "
                         r"rcs never unpickles objects\. Use an earlier checkpoint or retrain$")
    assert "http" not in err
    child = tmp_path / "configs" / "child.yaml"
    child.parent.mkdir()
    child.write_text("base: parent.yaml\ntrain: {epochs: 2}\n")
    one_line_error(capsys, main(["config", "show", "-c", str(child)]),
                   rf"config file '{re.escape(str(child))}' names base: parent\.yaml, but "
                   r"'.*configs/parent\.yaml' does not exist")


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         capture_output=True)
    return res.returncode == 0


def test_full_disk_while_saving_a_checkpoint(tmp_path, capsys):
    """A real full file system (a 100 KiB tmpfs: the epoch-1 checkpoint fits, epoch 2's does
    not): one line that says so, where, and that the previous checkpoint is intact."""
    full = tmp_path / "full"
    if not _mount_tmpfs(full, "100k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        one_line_error(capsys, train(full),
                       rf"no space left on device while writing the checkpoint "
                       rf"'{re.escape(str(full))}/checkpoint\.pt' \(.* MiB free there\); the "
                       r"previous checkpoint\.pt is intact\. To continue: free some space")
        assert load_checkpoint(full / "checkpoint.pt")["progress"]["epoch"] == 2
        assert not [p for p in full.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


def test_file_size_limit_while_saving_a_checkpoint(tmp_path):
    """The same path without root: a real kernel refusal (RLIMIT_FSIZE -> EFBIG) in a run that
    resumes from epoch 1 and cannot write its epoch-2 checkpoint."""
    from rcs.train.trainer import Trainer

    out = tmp_path / "run"
    Trainer(load_config(None, TINY + [f"out_dir={out}"]), resume="none").fit(until_epoch=1)
    good = (out / "checkpoint.pt").read_bytes()

    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

    res = subprocess.run([sys.executable, "-m", "rcs.cli.main", "train", "--out", str(out),
                          *sets(*TINY)], env=ENV, capture_output=True, text=True,
                         preexec_fn=limit, timeout=300)
    err = error_lines(res.stderr)
    assert res.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(r"file too large .* while writing the checkpoint '.*checkpoint\.pt' .*the "
                     r"previous checkpoint\.pt is intact", err), err
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ 4. library API
def test_library_api_refuses_bad_inputs_naming_the_argument():
    import rcs
    from rcs.config import ModelConfig
    from rcs.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, blocks=[1], head_dim=16))
    x = torch.rand(40, 3, 8, 8)

    class DS(torch.utils.data.Dataset):
        def __init__(self, x: torch.Tensor):
            self.x = x

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int):
            return self.x[i], 0

    def sel(fraction=0.2):
        return rcs.RCSSelector(model=model, fraction=fraction, rounds=2, candidate_batch=16,
                               val_attack_steps=1, train_attack_steps=1)

    nan = x.clone()
    nan[5, 0, 0, 0] = float("nan")
    ds = DS(x)
    cases = [
        (lambda: sel().select(DS(x[:0]), [0]), r"select\(data, \.\.\.\): the training dataset "
                                               r"is empty"),
        (lambda: sel().select(ds, list(range(40))), r"validation indices cover all 40 training "
                                                    r"images, leaving no candidate"),
        (lambda: sel().select(ds, ds), r"val is the training dataset itself"),
        (lambda: sel().select(DS(x * 255), [0, 1]), r"values in \[.*, 255\]; images must be in "
                                                    r"\[0, 1\]: divide them by 255"),
        (lambda: sel().select(x * 255, [0, 1]), r"images must be in \[0, 1\]"),
        (lambda: sel().select(DS((x - 0.5) / 0.25), [0, 1]), r"remove the Normalize"),
        (lambda: sel().select(DS(nan), [0, 1]), r"dataset items \[5\] have NaN or infinite"),
        (lambda: sel(fraction="0.2"), r"fraction='0\.2' must be a number in \(0, 1\], e\.g\. "
                                      r"fraction=0\.2"),
        (lambda: sel().select(ds, [0, 500]), r"validation indices \[500\] are outside the "
                                             r"training dataset \(0\.\.39\)"),
        (lambda: sel().select(ds, DS(torch.rand(4, 3, 16, 16))), r"training images are "
                                                                  r"\(3, 8, 8\) but validation"),
    ]
    for call, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            call()


# ------------------------------------------------------------------------------ 5. results
def test_a_second_finetune_mode_merges_into_the_table(pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    for mode in ("slf", "alf"):
        assert main(["finetune", "--checkpoint", str(pretrained), "--out", str(out), "--mode",
                     mode, "--attacks", "clean", *sets(*FT)]) == 0
    table = json.loads((out / "results.json").read_text())
    assert sorted(table) == ["alf", "slf"] and all("SA" in r["headline"] for r in table.values())
    md = (out / "results.md").read_text()
    assert 0 < md.index("| SLF | 1 |") < md.index("| ALF | 1 |")
    # a re-run of SLF replaces its own row only
    assert main(["finetune", "--checkpoint", str(pretrained), "--out", str(out), "--mode",
                 "slf", "--resume", "none", "--attacks", "none", *sets(*FT)]) == 0
    table = json.loads((out / "results.json").read_text())
    assert sorted(table) == ["alf", "slf"] and "headline" not in table["slf"]
    assert "SA" in table["alf"]["headline"]
    # `rcs eval` of one mode's classifier updates the table too
    assert "| ALF | 1 | 0.01 | " in md and re.search(r"\| ALF \| 1 \| 0\.01 \| [\d.]+ \| - \|", md)
    assert main(["eval", "--checkpoint", str(out / "alf" / "classifier.pt"), "--attacks",
                 "pgd20", *sets("eval.pgd.steps=1")]) == 0
    md = (out / "results.md").read_text()
    assert re.search(r"\| ALF \| 1 \| 0\.01 \| [\d.]+ \| [\d.]+ \|", md), md
    assert "| SLF | 1 |" in md


def _stop_when(pred, timeout: float = 120.0) -> threading.Thread:
    """Send this process SIGTERM once ``pred()`` holds (what a cluster or `kill` does)."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if pred():
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_sigterm_during_finetuning_saves_and_resumes(pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    cmd = ["finetune", "--checkpoint", str(pretrained), "--out", str(out), "--attacks", "none",
           *sets("finetune.slf.epochs=100000", "finetune.slf.batch_size=16")]
    log = out / "slf" / "metrics.jsonl"

    def epochs() -> int:
        return sum(r["event"] == "epoch" for r in read_jsonl(log)) if log.exists() else 0

    watcher = _stop_when(lambda: epochs() >= 1)
    assert main(cmd) == 128 + signal.SIGTERM
    watcher.join()
    stdout = capsys.readouterr().out
    assert re.search(r"rcs finetune: stopped by signal 15; the fine-tuning state is saved in "
                     r".*slf/state\.pt\. Run the same command again to resume\.", stdout)
    state = load_checkpoint(out / "slf" / "state.pt")
    done = epochs()
    assert state["epoch"] >= 1 and not (out / ".rcs-lock").exists()
    watcher = _stop_when(lambda: epochs() > done)
    assert main(cmd) == 128 + signal.SIGTERM
    watcher.join()
    assert re.search(rf"\[finetune\] resuming SLF from .*state\.pt: epoch {state['epoch'] + 1}/"
                     rf"100000, batch {state.get('batch', 0)}", capsys.readouterr().out)


def test_sigterm_mid_epoch_resumes_fine_tuning_exactly(tmp_path):
    """A real SIGTERM between two batches: the state saved there resumes to bitwise the
    weights of the uninterrupted run."""
    from rcs.data import ImageDataset
    from rcs.finetune.loop import fit
    from rcs.finetune.protocol import ModeSettings
    from rcs.utils.signals import TrainingInterrupted

    rng = np.random.default_rng(0)
    ds = ImageDataset(rng.integers(0, 256, (64, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, 64))
    settings = ModeSettings(mode="slf", epochs=3, lr=0.1, batch_size=8, milestones=(2,),
                            weight_decay=2e-4, momentum=0.9, protocol="none")
    calls = {"n": 0}

    def run(out: Path, kill_at: int | None) -> nn.Module:
        torch.manual_seed(0)
        fc = nn.Linear(48, 3)

        def step(x, y, gen):
            calls["n"] += 1
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGTERM)
            noise = torch.rand(x.shape, generator=gen) * 0.01
            return nn.functional.cross_entropy(fc(x.float().flatten(1) / 255 + noise.flatten(1)), y)

        fit(step, {"fc": fc}, settings, ds, np.arange(64), torch.device("cpu"), out, seed=1)
        return fc

    ref = run(tmp_path / "ref", None)
    calls["n"] = 0
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "cut", 11)  # batch 3 of epoch 2 (8 batches per epoch)
    state = load_checkpoint(tmp_path / "cut" / "state.pt")
    assert (state["epoch"], state["batch"], len(state["epoch_losses"])) == (1, 3, 3)
    got = run(tmp_path / "cut", None)
    assert torch.equal(got.weight, ref.weight) and torch.equal(got.bias, ref.bias)
    assert json.loads((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()[-1])[
        "epoch"] == 3


def test_outputs_honour_the_umask(tmp_path, umask022):
    from rcs.selection.base import Coreset
    from rcs.utils.atomic import atomic_write_text

    out = tmp_path / "run"
    assert train(out) == 0
    files = [out / "checkpoint.pt", out / "config.yaml", out / "summary.json",
             out / "metrics.jsonl", *sorted((out / "coresets").iterdir())]
    path = Coreset(np.array([3, 1]), meta={}).save(tmp_path / "c.npz")
    files += [path, path.with_suffix(".json")]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o644" for p in files}
    os.umask(0o077)
    assert (atomic_write_text(tmp_path / "private.txt", "x").stat().st_mode & 0o777) == 0o600


# ------------------------------------------------------------------------------ beyond the list
def test_slurm_jobs_are_checked_before_they_wait_in_the_queue(pretrained, tmp_path, capsys):
    """What a job reads is checked at submission (before, these failed hours later in the job)."""
    jobs = tmp_path / "jobs"
    common = ["--executor", "local", "--job-dir", str(jobs)]
    one_line_error(capsys, main(["submit", *common, "finetune", "--checkpoint",
                                 str(tmp_path / "missing.pt")]), r"missing\.pt' does not exist")
    from rcs.config import ModelConfig
    from rcs.models.pretrained import build_classifier, save_classifier

    mcfg = ModelConfig(width=4, blocks=[1])
    clf = save_classifier(tmp_path / "clf.pt", build_classifier(mcfg, 10), mcfg, 10, {})
    one_line_error(capsys, main(["submit", *common, "select", "--checkpoint", str(clf), "--out",
                                 str(tmp_path / "c.npz")]), r"is a fine-tuned classifier")
    one_line_error(capsys, main(["submit", *common, "eval", "--checkpoint", str(pretrained)]),
                   r"is a pretraining checkpoint without a classifier")
    empty = tmp_path / "profile.yaml"
    empty.write_text("")
    one_line_error(capsys, main(["submit", "--profile", str(empty), *common, "train", "--out",
                                 str(tmp_path / "r"), *sets(*TINY)]),
                   r"SLURM profile '.*profile\.yaml' is empty")
    one_line_error(capsys, main(["submit", *common, "train", "--out", str(tmp_path / "r"),
                                 *sets(*TINY, "train.attack.eps=8")]), r"did you mean 8/255\?")
    assert not jobs.exists()  # nothing was submitted


def test_invalid_yaml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1,\n")
    one_line_error(capsys, main(["config", "show", "-c", str(bad)]),
                   r"bad\.yaml' is not valid YAML \(line 2, column 1\): expected the node")
