"""Sweeps: ``--sweep key=v1,v2`` options -> the points of their Cartesian product.

``--sweep selection.fraction=0.1,0.2 --sweep seed=0,1,2`` gives 6 points, each a list of
``key=value`` overrides and a folder name such as ``fraction-0.1_seed-0``. Short aliases:
``fraction`` (selection.fraction), ``selector`` (selection.method), ``method`` (train.method),
``epochs`` (train.epochs). Values are split at commas outside brackets, so list values work:
``--sweep model.blocks=[1,1],[2,2]``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from rcs.config.short_keys import full_key
from rcs.errors import ConfigError


@dataclass(frozen=True)
class SweepPoint:
    name: str
    """Folder-safe name, e.g. ``fraction-0.1_seed-2``."""
    overrides: tuple[str, ...]
    """``key=value`` config overrides of this point."""
    values: tuple[tuple[str, str], ...]
    """(key, value) pairs, in --sweep order."""


def split_values(text: str) -> list[str]:
    """``'0.1,0.2'`` -> ['0.1', '0.2']; commas inside [] or {} do not split."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def parse_sweeps(specs: list[str]) -> list[tuple[str, list[str]]]:
    axes: list[tuple[str, list[str]]] = []
    for spec in specs or []:
        key, sep, raw = spec.partition("=")
        key = full_key(key.strip())
        values = split_values(raw) if sep else []
        if not key or not values:
            raise ConfigError(f"--sweep '{spec}' must look like key=v1,v2 (e.g. --sweep "
                              "selection.fraction=0.1,0.2 --sweep seed=0,1,2)")
        if key in [k for k, _ in axes]:
            raise ConfigError(f"--sweep names '{key}' twice; give all its values in one option")
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep '{spec}' repeats a value")
        axes.append((key, values))
    return axes


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def expand(specs: list[str]) -> list[SweepPoint]:
    """Every point of the product of the --sweep axes (empty list: no sweep)."""
    axes = parse_sweeps(specs)
    if not axes:
        return []
    shorts = [k.split(".")[-1] for k, _ in axes]
    labels = [s if shorts.count(s) == 1 else k.replace(".", "-")
              for s, (k, _) in zip(shorts, axes)]
    points = []
    for combo in itertools.product(*[v for _, v in axes]):
        pairs = tuple((k, v) for (k, _), v in zip(axes, combo))
        name = "_".join(f"{_safe(lab)}-{_safe(v)}" for lab, (_, v) in zip(labels, pairs))
        points.append(SweepPoint(name, tuple(f"{k}={v}" for k, v in pairs), pairs))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError("--sweep values give clashing folder names "
                          f"({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    return points
