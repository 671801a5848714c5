"""Structured run logging: one JSON object per line (JSONL), flushed at every write."""

from __future__ import annotations

import json
import math
import time
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
    """Appends records ``{"time": ..., **fields}`` to ``path`` (JSONL); optional TensorBoard mirror.

    Only rank 0 should create one; pass ``enabled=False`` elsewhere.
    """

    def __init__(self, path: str | Path, enabled: bool = True, tensorboard: bool = False):
        self.path = Path(path)
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.path.parent / "tb"))
                except ImportError:
                    self._tb = None

    def log(self, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"time": time.time(), **{k: _jsonable(v) for k, v in fields.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None and "step" in fields:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("time", "step"):
                    self._tb.add_scalar(k, v, int(fields["step"]))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


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
