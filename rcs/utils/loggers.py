"""Logger backends behind :class:`rcs.utils.metrics.MetricsLogger`: one class per tool.

Every record is a flat-ish dict ``{"event": "step" | "epoch" | "selection" | "eval" | ...,
"time": ..., **fields}``. The JSONL file gets it exactly (``metrics.jsonl``, always on); the
others get what they can show:

* ``csv``: ``<run>/csv/<event>.csv``, one row per record, nested dicts flattened to dotted
  columns (``timings.greedy``) and lists written as JSON; a new column rewrites the file.
* ``tensorboard``: scalars ``<event>/<key>`` (numbers, flattened dicts, numeric lists of at
  most :data:`MAX_LIST` entries as ``key.i``) at the record's ``step`` (else ``epoch``) in
  ``<run>/tb``; needs the ``tensorboard`` package.
* ``wandb``: the same scalars through ``wandb.log`` into a run named after the config, in
  ``offline`` mode by default (no network; ``wandb sync <dir>`` uploads later); needs
  ``wandb``.

A missing optional package is a ``ConfigError`` naming the install command, raised when the
logger is created (before any training).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rcs.errors import ConfigError

LOGGERS = ("jsonl", "csv", "tensorboard", "wandb")
MAX_LIST = 64
"""Numeric lists up to this long become one scalar per entry in TensorBoard / W&B."""

_INSTALL = {
    "tensorboard": "pip install 'rcs-toolkit[tensorboard]' (or pip install tensorboard)",
    "wandb": "pip install 'rcs-toolkit[wandb]' (or pip install wandb)",
}


def missing_package(name: str, err: BaseException) -> ConfigError:
    return ConfigError(f"log.loggers has {name!r} but its package does not import ({err}); "
                       f"install it: {_INSTALL[name]}, or remove {name!r} from log.loggers")


def flatten(rec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys (``{"timings": {"greedy": 1}}`` -> ``timings.greedy``)."""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def scalars(rec: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a record for scalar dashboards: flattened, numeric lists of at most
    :data:`MAX_LIST` entries expanded to ``key.i``; ``time``, ``event``, strings and
    non-finite values dropped."""
    out: dict[str, float] = {}
    for k, v in flatten(rec).items():
        if k in ("time", "event"):
            continue
        if isinstance(v, (list, tuple)):
            if 0 < len(v) <= MAX_LIST and all(_is_number(x) for x in v):
                out.update({f"{k}.{i}": float(x) for i, x in enumerate(v)})
        elif _is_number(v) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_step(rec: Mapping[str, Any], fallback: int) -> int:
    """The x-axis value of a record: its ``step``, else its ``epoch``, else ``fallback``."""
    for k in ("step", "epoch"):
        if _is_number(rec.get(k)):
            return int(rec[k])
    return fallback


class JsonlBackend:
    """One JSON object per line, flushed (file closed) at every write."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, rec: Mapping[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        pass


class CsvBackend:
    """``<folder>/<event>.csv``: a header row, then one row per record of that event."""

    name = "csv"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.columns: dict[str, list[str]] = {}

    def _cell(self, v: Any) -> Any:
        return json.dumps(v) if isinstance(v, (list, tuple)) else v

    def write(self, rec: Mapping[str, Any]) -> None:
        event = str(rec.get("event") or "record")
        row = {k: self._cell(v) for k, v in flatten(rec).items()}
        path = self.folder / f"{event}.csv"
        cols = self.columns.get(event)
        if cols is None and path.is_file():  # resumed run: continue the existing file
            with open(path, newline="", encoding="utf-8") as f:
                cols = next(csv.reader(f), [])
        new = [k for k in row if k not in (cols or [])]
        self.folder.mkdir(parents=True, exist_ok=True)
        if cols is None or not path.is_file():
            cols = list(row)
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, cols).writeheader()
        elif new:  # a column appears: rewrite the file with the wider header
            cols = cols + new
            with open(path, newline="", encoding="utf-8") as f:
                old = list(csv.DictReader(f))
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, cols)
                w.writeheader()
                w.writerows(old)
            os.replace(tmp, path)
        self.columns[event] = cols
        with open(path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, cols).writerow(row)

    def close(self) -> None:
        pass


class TensorBoardBackend:
    """Scalars ``<event>/<key>`` in a TensorBoard event file under ``log_dir``."""

    name = "tensorboard"

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise missing_package("tensorboard", e) from None
        self.writer = SummaryWriter(str(log_dir))
        self.count = 0

    def write(self, rec: Mapping[str, Any]) -> None:
        event = str(rec.get("event") or "record")
        step = record_step(rec, self.count)
        self.count += 1
        for k, v in scalars(rec).items():
            self.writer.add_scalar(f"{event}/{k}", v, step)
        if event != "step":  # epochs, selections, evaluations: visible at once
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    """A Weights & Biases run (offline by default) receiving ``<event>/<key>`` scalars."""

    name = "wandb"

    def __init__(self, folder: Path, project: str, name: str, mode: str, entity: str = "",
                 config: Mapping[str, Any] | None = None, group: str = "") -> None:
        try:
            import wandb
        except ImportError as e:
            raise missing_package("wandb", e) from None
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, entity=entity or None, name=name, mode=mode,
                              dir=str(folder), config=dict(config or {}),
                              group=group or None, reinit="create_new")
        self.folder = folder

    def write(self, rec: Mapping[str, Any]) -> None:
        event = str(rec.get("event") or "record")
        values = {f"{event}/{k}": v for k, v in scalars(rec).items()}
        if values:
            self.run.log(values)

    def close(self) -> None:
        self.run.finish()


def check_loggers(names: Iterable[str]) -> list[str]:
    """Validated logger names, ``jsonl`` first (always on)."""
    names = list(names)
    for n in names:
        if n not in LOGGERS:
            raise ConfigError(f"log.loggers entry {n!r} is not one of {', '.join(LOGGERS)}")
    return ["jsonl"] + [n for n in dict.fromkeys(names) if n != "jsonl"]


def importable(name: str) -> None:
    """Raise the install-hint ``ConfigError`` when logger ``name``'s package is missing."""
    try:
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        elif name == "wandb":
            import wandb  # noqa: F401
    except ImportError as e:
        raise missing_package(name, e) from None
