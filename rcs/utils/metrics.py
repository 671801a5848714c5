"""Structured run logging: one JSON object per line (JSONL), flushed at every write, mirrored to
CSV / TensorBoard / W&B by ``log.loggers`` (see :mod:`rcs.utils.loggers`)."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):  # torch / numpy scalars
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class MetricsLogger:
    """Appends records ``{"time": ..., **fields}`` to ``path`` (JSONL, always) and mirrors them
    to the other loggers named in ``loggers`` (csv, tensorboard, wandb: see
    :mod:`rcs.utils.loggers`), which write beside ``path`` (``csv/``, ``tb/``, ``wandb/``).

    ``loggers=None`` takes the process default set by :func:`use_loggers` (else jsonl only);
    ``log`` holds the W&B settings (a :class:`rcs.config.LogConfig`); ``run_name`` and
    ``config`` name and describe the W&B run. Only rank 0 should log; pass ``enabled=False``
    elsewhere. Backends are opened at the first record, so a run that moves an older run's
    ``metrics.jsonl`` aside before logging also starts the other loggers afresh (their old
    folders get a ``.prev`` suffix); a resumed run appends. A missing optional package is a
    ``ConfigError`` with the install command, raised here.
    """

    def __init__(self, path: str | Path, enabled: bool = True, tensorboard: bool = False,
                 loggers: Iterable[str] | None = None, log: Any = None,
                 run_name: str = "", config: dict[str, Any] | None = None) -> None:
        from rcs.utils.loggers import check_loggers, importable

        self.path = Path(path)
        self.enabled = enabled
        default = _DEFAULT.get("loggers", ["jsonl"]) if loggers is None else loggers
        self.loggers = check_loggers([*default, *(["tensorboard"] if tensorboard else [])])
        self.log_cfg = log if log is not None else _DEFAULT.get("log")
        self.run_name = run_name or _DEFAULT.get("run_name", "") or self.path.parent.name
        self.config = config
        self._backends: list[Any] | None = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for name in self.loggers:
                importable(name)

    @classmethod
    def from_config(cls, path: str | Path, cfg: Any, enabled: bool = True,
                    run_name: str = "") -> MetricsLogger:
        """The loggers of ``cfg.log`` (a :class:`rcs.config.RunConfig`), the W&B run named
        ``run_name`` (default ``cfg.name``) with the resolved config attached."""
        from rcs.utils.serialize import to_dict

        return cls(path, enabled, loggers=cfg.log.loggers, log=cfg.log,
                   run_name=run_name or cfg.name, config=to_dict(cfg))

    def _open(self) -> list[Any]:
        from rcs.utils import loggers as lg

        folder = self.path.parent
        fresh = not self.path.exists()
        backends: list[Any] = [lg.JsonlBackend(self.path)]
        stem = "" if self.path.name == "metrics.jsonl" else self.path.stem + "-"
        for name in self.loggers[1:]:
            sub = folder / f"{stem}{SUBDIRS[name]}"
            if fresh and sub.exists() and name != "wandb":  # W&B keeps one folder per run
                prev = sub.with_name(sub.name + ".prev")
                if prev.exists():
                    shutil.rmtree(prev)
                sub.replace(prev)
            if name == "csv":
                backends.append(lg.CsvBackend(sub))
            elif name == "tensorboard":
                backends.append(lg.TensorBoardBackend(sub))
            else:
                c = self.log_cfg
                backends.append(lg.WandbBackend(  # wandb writes into <dir>/wandb itself
                    Path(c.wandb_dir) if c is not None and c.wandb_dir else folder,
                    project=c.wandb_project if c is not None else "rcs",
                    name=self.run_name, mode=c.wandb_mode if c is not None else "offline",
                    entity=c.wandb_entity if c is not None else "",
                    config=self.config, group=c.wandb_group if c is not None else ""))
        return backends

    def log(self, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"time": time.time(), **{k: _jsonable(v) for k, v in fields.items()}}
        if self._backends is None:
            self._backends = self._open()
        for b in self._backends:
            b.write(rec)

    def close(self) -> None:
        """Flush and close every backend (ends the W&B run); logging again reopens them."""
        for b in self._backends or []:
            b.close()
        self._backends = None


_DEFAULT: dict[str, Any] = {}
SUBDIRS = {"csv": "csv", "tensorboard": "tb", "wandb": "wandb"}
"""Folder of each optional logger, beside metrics.jsonl."""


@contextlib.contextmanager
def use_loggers(cfg: Any, run_name: str = "") -> Iterator[None]:
    """Within the block, ``MetricsLogger(path)`` without ``loggers`` uses ``cfg.log`` (a
    RunConfig): how fine-tuning's inner loops log where the command's config says."""
    saved = dict(_DEFAULT)
    _DEFAULT.update(loggers=list(cfg.log.loggers), log=cfg.log, run_name=run_name or cfg.name)
    try:
        yield
    finally:
        _DEFAULT.clear()
        _DEFAULT.update(saved)


def coreset_fields(coreset: Any, dataset: Any = None) -> dict[str, Any]:
    """What a selection record shows of a coreset besides its size: the class histogram of the
    chosen images (when the dataset has labels) and the RD after every greedy round (when the
    selector reports it: RCS)."""
    import numpy as np

    idx = np.asarray(coreset.indices)
    out: dict[str, Any] = {}
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(idx):
        n = int(getattr(dataset, "num_classes", 0) or 0)
        out["class_histogram"] = np.bincount(np.asarray(labels)[idx], minlength=n).tolist()
    meta = getattr(coreset, "meta", None) or {}
    if "rd_per_round" in meta:
        out["rd_per_round"] = list(meta["rd_per_round"])
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read every record of a JSONL file (skips a truncated last line left by a kill)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
