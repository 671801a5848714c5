"""Plain data out of rcs objects: dataclass configs as dicts, results as atomically written JSON.

Every layer writes its JSON (summaries, results, coreset metadata) through :func:`write_json` and
reads it back through :func:`read_json`, so the format (indent 2, sorted keys, ``str`` for what
JSON cannot hold) is the same everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rcs.utils.atomic import atomic_write_text


def to_dict(obj: Any) -> Any:
    """A dataclass (nested ones too) as a plain dict, tuples as lists: ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):  # a "sections" field's entries are written inline
            value = to_dict(getattr(obj, f.name))
            if f.metadata.get("sections"):
                out.update(value)
            else:
                out[f.name] = value
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically (a reader never sees half)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when the file is missing or not (yet) valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
