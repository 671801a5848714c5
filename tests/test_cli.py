"""The `rcs` command: help for every sub-command, clear one-line errors, config listing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from rcs.cli.main import COMMANDS, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcs.cli.main", *args], capture_output=True,
                          text=True, timeout=120)


def test_top_level_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001
    for action in sub._actions:  # noqa: SLF001
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings or action.dest} of {command} has no help"
        if action.option_strings:
            name = action.option_strings[0]
        elif action.choices:
            name = "{" + ",".join(action.choices) + "}"
        else:
            name = action.metavar or action.dest
        assert name in out


def test_config_keys_and_show(capsys):
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    assert "selection.fraction" in out and "train.attack.eps" in out
    batch = next(line for line in out.splitlines() if line.startswith("train.batch_size "))
    assert "Global batch: all DDP ranks together" in batch and "batch_size / W" in batch
    assert "lr_schedule" in out and "epoch (published)" in out
    assert main(["config", "show", "--set", "train.epochs=3"]) == 0
    assert "epochs: 3" in capsys.readouterr().out


def test_errors_are_one_clear_line(capsys):
    assert main(["config", "show", "--set", "selection.fraction=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rcs config: error: selection.fraction=2.0 must be in (0, 1]")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_submit_checks_settings_before_submitting(capsys, tmp_path):
    assert main(["submit", "train", "--out", str(tmp_path), "--nodes", "0"]) == 2
    assert "slurm.nodes=0 must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "slurm").exists()  # nothing was submitted


def test_select_with_missing_checkpoint_is_clear(capsys, tmp_path):
    assert main(["select", "--checkpoint", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "c.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_config_key_has_a_one_line_meaning(capsys):
    from rcs.config import describe_config

    empty = [key for key, _, doc in describe_config() if not doc.strip()]
    assert empty == []
    assert main(["config", "keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(describe_config())  # one line per key
    assert any(line.startswith("train.epochs ") and "epochs" in line.split(None, 2)[2]
               for line in lines)


def test_top_level_help_lists_every_method_and_selector(capsys):
    from rcs.methods.base import METHODS
    from rcs.selection.base import SELECTORS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in [*METHODS, *SELECTORS]:
        assert re.search(rf"\b{re.escape(name)}\b", out), name
    assert "export" in out


def test_select_takes_selector_and_warns_on_the_old_method_flag(tmp_path, capsys):
    import json as _json

    from test_export import pretraining_checkpoint

    path, _, _ = pretraining_checkpoint(tmp_path)
    assert main(["select", "--checkpoint", str(path), "--selector", "random", "--fraction",
                 "0.5", "--out", str(tmp_path / "a.npz")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["select", "--checkpoint", str(path), "--method", "random", "--fraction",
                 "0.5", "--out", str(tmp_path / "b.npz")]) == 0
    assert "--method is deprecated" in capsys.readouterr().err
    a = _json.loads((tmp_path / "a.json").read_text())
    b = _json.loads((tmp_path / "b.json").read_text())
    assert a["meta"]["method"] == b["meta"]["method"] == "random"
    assert main(["select", "--checkpoint", str(path), "--selector", "rcs", "--method",
                 "random", "--out", str(tmp_path / "c.npz")]) == 2
    assert "disagree" in capsys.readouterr().err


@pytest.fixture()
def restore_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("RCS_THREADS", os.environ.get("RCS_THREADS", ""))  # restored after
    yield
    torch.set_num_threads(before)


def test_threads_come_from_the_flag_then_rcs_threads_then_omp(monkeypatch, restore_threads):
    from rcs.errors import ConfigError
    from rcs.utils.threads import available_cores, resolve_threads

    monkeypatch.delenv("RCS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads() == (available_cores(), "all cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads() == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv("RCS_THREADS", "2")
    assert resolve_threads() == (2, "$RCS_THREADS")
    assert resolve_threads(1) == (1, "--threads")
    monkeypatch.setenv("RCS_THREADS", "two")
    with pytest.raises(ConfigError, match="RCS_THREADS='two' must be a whole number"):
        resolve_threads()


@pytest.mark.parametrize("argv", [["--threads", "2", "report"], ["report", "--threads", "2"]])
def test_every_command_takes_threads_and_prints_them_in_its_header(tmp_path, capsys, argv,
                                                                    restore_threads):
    import torch

    (tmp_path / "r").mkdir()
    main([*argv, str(tmp_path / "r"), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert "[rcs report] threads: 2 of " in err and "(--threads;" in err
    assert torch.get_num_threads() == 2 and os.environ["RCS_THREADS"] == "2"
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():  # noqa: SLF001
        assert any("--threads" in a.option_strings for a in sub._actions), name  # noqa: SLF001
