"""A run folder records only what ran: the resume guard, the old run kept aside, the folder lock.

* :func:`check_resume` compares the config saved in a checkpoint with the config of the command
  that wants to continue it. A setting that alters the result (method, lr, attack, epochs, data,
  model, seed, ...) refuses the resume, naming every differing key and the two ways out
  (``--resume none``, which keeps the old run aside, or a new ``--out``). Result-neutral
  settings (:data:`NEUTRAL_KEYS`, :data:`NEUTRAL_SECTIONS`: logging, checkpoint frequency,
  device, compile/memory-format knobs, data paths, the fine-tuning / evaluation / SLURM sections)
  may change; they are returned so the resume record in ``metrics.jsonl`` shows them. Before the
  first selection the selector's own settings (``selection.*`` except :data:`SCHEDULE_KEYS`, and
  a change to or from ``full``, which has no coreset epochs) have played no part yet, so they may
  change too (``rcs compare`` resumes a shared full-data warm-up with each selector).
* :func:`keep_aside` moves an old run's outputs to ``<out>/previous/<time>/`` on a fresh start,
  so a folder never mixes two runs.
* :func:`lock_run` takes ``<out>/.rcs-lock`` (pid, host, command, a heartbeat): a second process
  writing the same folder gets a clear :class:`RunFolderError` instead of corrupting it. A lock
  whose process is gone (same host) or whose heartbeat stopped (another host, e.g. a requeued
  SLURM job after a node failure) is taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rcs.errors import RunFolderError
from rcs.utils.serialize import to_dict

NEUTRAL_KEYS = frozenset({
    "name", "out_dir", "device", "data.root", "data.cache_dir", "data.download",
    "train.log_every", "train.checkpoint_every", "train.checkpoint_every_steps",
    "train.compile", "train.channels_last", "train.deterministic",
})
"""Settings that do not change what a run computes (only where, how fast, how it is logged)."""
NEUTRAL_SECTIONS = ("eval.", "finetune.", "slurm.")
"""Sections pretraining does not read (used by other commands on the same config)."""
SCHEDULE_KEYS = frozenset({"selection.fraction", "selection.warmup_epochs", "selection.every"})
"""Selection settings that shape the run before the first selection (epoch sizes, lr schedule)."""

LOCK_NAME = ".rcs-lock"
HEARTBEAT_S = 30.0
STALE_S = 180.0
"""A lock of another host whose heartbeat is older than this belongs to a dead process."""
PREVIOUS = "previous"
RUN_OUTPUTS = ("checkpoint.pt", "metrics.jsonl", "summary.json", "config.yaml", "coresets",
               "selection", "tb", "checkpoint.pt.prev", "metrics.jsonl.prev")
"""What `rcs train` writes in a run folder (plus ``finetune*`` folders of that checkpoint)."""
_EVIDENCE = ("checkpoint.pt", "metrics.jsonl", "summary.json", "coresets")


# ------------------------------------------------------------------------------ the comparison
def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'train': {'lr': 1}}`` -> ``{'train.lr': 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def is_neutral(key: str) -> bool:
    """True for a setting that may change when a run is resumed."""
    return key in NEUTRAL_KEYS or key.startswith(NEUTRAL_SECTIONS)


_MISSING = object()


def config_diff(saved: dict[str, Any], current: dict[str, Any],
                defaults: dict[str, Any] | None = None) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every leaf that differs. A key the saved config
    lacks (the schema gained it since) counts as its default; keys no longer in the schema are
    ignored."""
    s, c = flatten(saved), flatten(current)
    d = flatten(defaults or {})
    diffs = []
    for key, new in c.items():
        old = s.get(key, d.get(key, _MISSING))
        if old is _MISSING or not _same(old, new):
            diffs.append((key, "(not recorded)" if old is _MISSING else old, new))
    return diffs


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(
            a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _show(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(state: dict[str, Any], cfg: Any, checkpoint: str | Path, out: str | Path,
                 main: bool = True) -> dict[str, list[Any]]:
    """Refuse to resume ``state`` (a checkpoint) under ``cfg`` when a result-altering setting
    differs (:class:`RunFolderError` naming each key and the ways out); return the neutral
    changes as ``{key: [old, new]}`` for the resume record. A run continued from a checkpoint
    outside ``out`` keeps an older run found in ``out`` aside (by the ``main`` process)."""
    changed = _check(state, cfg, checkpoint, out)
    if main and Path(checkpoint).resolve() != (Path(out) / "checkpoint.pt").resolve():
        _keep_aside_said(Path(out))
    return changed


def _check(state: dict[str, Any], cfg: Any, checkpoint: str | Path, out: str | Path
           ) -> dict[str, list[Any]]:
    text = state.get("config_json")
    if not text:
        return {}
    progress = state.get("progress") or {}
    selected = int(progress.get("selections", 0)) > 0 or int(progress.get("selected_epoch", 0))
    diffs = config_diff(json.loads(text), to_dict(cfg), to_dict(type(cfg)()))  # vs defaults
    neutral, altering = {}, []
    for key, old, new in diffs:
        free = is_neutral(key) or (not selected and key.startswith("selection.")
                                   and key not in SCHEDULE_KEYS
                                   and not (key == "selection.method" and "full" in (old, new)))
        if free:
            neutral[key] = [old, new]
        else:
            altering.append(f"{key} {_show(old)} -> {_show(new)}")
    if altering:
        where = (f"finished, {int(progress.get('epoch', 1)) - 1} epochs" if state.get("complete")
                 else f"epoch {progress.get('epoch', '?')}, batch {progress.get('batch', 0)}")
        where += f", step {progress.get('step', 0)}"
        raise RunFolderError(
            f"checkpoint '{checkpoint}' ({where}) was trained with other settings: "
            f"{'; '.join(altering)}. Continuing it would mix two configs in one run. Either start "
            f"over in this folder with --resume none (the old run is kept aside in "
            f"{Path(out) / PREVIOUS}/<time>/), or give the new run its own folder with "
            "--out NEW_DIR (or resume with the checkpoint's settings)")
    return neutral


def resume_line(checkpoint: str | Path, progress: Any, epochs: int) -> str:
    """The console line of a resumed run: where it continues (``epochs``: the run's total)."""
    p = progress
    if p.epoch > epochs:
        return (f"[train] {checkpoint} is a finished run ({epochs} epochs, step {p.step}); "
                "nothing left to train, its summary is written again")
    what = f"epoch {p.epoch}/{epochs}, batch {p.batch}" if p.batch else \
        f"the start of epoch {p.epoch}/{epochs}"
    return (f"[train] resuming {checkpoint}: continuing at {what} (step {p.step}, "
            f"{p.selections} selection(s) made so far)")


# ------------------------------------------------------------------------------ old runs
def keep_aside(out: str | Path) -> Path | None:
    """Move an old run's outputs in ``out`` to ``out/previous/<time>/`` (None if there is no
    old run). The lock, ``slurm/`` job folders and earlier ``previous/`` runs stay."""
    out = Path(out)
    if not any((out / n).exists() for n in _EVIDENCE):
        return None
    items = [out / n for n in RUN_OUTPUTS if (out / n).exists()]
    items += sorted(p for p in out.glob("finetune*") if p.is_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = out / PREVIOUS / stamp
    n = 1
    while dest.exists():
        dest, n = out / PREVIOUS / f"{stamp}-{n}", n + 1
    dest.mkdir(parents=True)
    for item in items:
        item.replace(dest / item.name)
    return dest


def open_run_folder(out: str | Path, fresh: bool) -> None:
    """Lock ``out`` for this process; on a fresh start keep an older run found there aside."""
    lock_run(out)
    if fresh:
        _keep_aside_said(Path(out))


def _keep_aside_said(out: Path) -> None:
    if (old := keep_aside(out)) is not None:
        print(f"[train] starting over in {out}: the previous run there was moved to {old}",
              flush=True)


# ------------------------------------------------------------------------------ the lock
_HELD: dict[str, tuple[Path, str]] = {}
_HELD_LOCK = threading.Lock()
_BEAT: threading.Thread | None = None


def _heartbeat() -> None:
    while True:
        time.sleep(HEARTBEAT_S)
        with _HELD_LOCK:
            held = list(_HELD.values())
        for path, _ in held:
            with contextlib.suppress(OSError):
                os.utime(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stale(info: dict[str, Any], path: Path) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return True
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        return not _alive(info["pid"])
    return age > STALE_S


def _command() -> str:
    text = " ".join(["rcs", *sys.argv[1:]])
    return text if len(text) <= 100 else text[:97] + "..."


def lock_run(folder: str | Path) -> Path:
    """Take the lock of ``folder`` for this process (re-entrant within a process); returns the
    lock file. Another live process holding it: :class:`RunFolderError`."""
    global _BEAT
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    host, pid = socket.gethostname(), os.getpid()
    token = uuid.uuid4().hex
    record = json.dumps({"pid": pid, "host": host, "token": token, "since": time.time(),
                         "command": _command()})
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            info = _read(path)
            if info.get("pid") == pid and info.get("host") == host:
                path.write_text(record)  # a lock this process left (an earlier Trainer)
                break
            if not _stale(info, path):
                since = time.strftime("%Y-%m-%d %H:%M:%S",
                                      time.localtime(info.get("since", 0))) if info else "?"
                raise RunFolderError(
                    f"'{folder}' is being written by another rcs process (pid "
                    f"{info.get('pid', '?')} on host {info.get('host', '?')}, since {since}: "
                    f"{info.get('command', '?')}); two processes writing one folder would "
                    "corrupt it. Wait for that run to finish or use another --out. If that "
                    f"process no longer runs, delete {path}") from None
            stale = path.with_name(f"{LOCK_NAME}.stale-{token}")
            with contextlib.suppress(OSError):  # a dead process's lock: take it over
                os.replace(path, stale)
                stale.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        break
    else:
        raise RunFolderError(f"could not take the lock {path}; another process keeps replacing "
                             "it. Use another --out")
    with _HELD_LOCK:
        _HELD[key] = (path, token)
        if _BEAT is None:
            _BEAT = threading.Thread(target=_heartbeat, name="rcs-lock-heartbeat", daemon=True)
            _BEAT.start()
    return path


def unlock_run(folder: str | Path) -> None:
    """Release this process's lock of ``folder`` (no-op when it holds none)."""
    path = Path(folder) / LOCK_NAME
    with _HELD_LOCK:
        held = _HELD.pop(str(path.resolve()), None)
    if held is not None and _mine(path, held[1]):
        with contextlib.suppress(OSError):
            path.unlink()


def _mine(path: Path, token: str) -> bool:
    """The lock file is this process's (a forked child inherits the registry, not the lock)."""
    info = _read(path)
    return info.get("token") == token and info.get("pid") == os.getpid()


@atexit.register
def _release_all() -> None:
    with _HELD_LOCK:
        held = list(_HELD.values())
        _HELD.clear()
    for path, token in held:
        if _mine(path, token):
            with contextlib.suppress(OSError):
                path.unlink()
