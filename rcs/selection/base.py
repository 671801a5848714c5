"""The Selector protocol, the Coreset result (npz + JSON file) and the selector registry.

Every selector (RCS, random, full data, the baselines) takes a :class:`SelectionContext` and
returns a :class:`Coreset` of exactly ``budget(fraction, len(candidates))`` dataset indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from rcs.errors import ConfigError, CoresetError
from rcs.utils.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import torch

    from rcs.config.schema import RunConfig


def budget(fraction: float, n: int) -> int:
    """n_select = round(fraction * n), at least 1 and at most n (no truncation under-selection)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction={fraction} must be in (0, 1]")
    return int(min(n, max(1, round(fraction * n))))


@dataclass
class Coreset:
    """A chosen subset of a dataset.

    ``indices`` are sorted int64 positions in the *dataset* (not in the candidate list);
    ``weights`` optional per-index weights; ``gains`` the gain of each greedy round;
    ``meta`` holds fraction, seed, dataset length and fingerprint, settings and timings.
    """

    indices: np.ndarray
    weights: np.ndarray | None = None
    gains: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")
        self.indices = idx[order]
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float32).reshape(-1)[order]
        if len(np.unique(self.indices)) != len(self.indices):
            raise CoresetError("coreset indices contain duplicates")

    def __len__(self) -> int:
        return len(self.indices)

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz: indices, weights) and ``path`` with .json (gains, meta)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {"indices": self.indices}
        if self.weights is not None:
            arrays["weights"] = self.weights
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        atomic_write_text(path.with_suffix(".json"), json.dumps(
            {"size": len(self), "gains": [float(g) for g in self.gains], "meta": self.meta},
            indent=2, sort_keys=True, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, dataset_len: int | None = None,
             fingerprint: str | None = None) -> Coreset:
        """Read a coreset; refuse it when it was made for another dataset."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        if not path.is_file():
            raise CoresetError(f"coreset file '{path}' not found; create one with `rcs select`")
        try:
            with np.load(path, allow_pickle=False) as z:
                indices = z["indices"]
                weights = z["weights"] if "weights" in z.files else None
        except (ValueError, OSError, KeyError) as e:
            raise CoresetError(f"coreset file '{path}' is not a valid rcs coreset ({e})") from None
        side = path.with_suffix(".json")
        info = json.loads(side.read_text()) if side.is_file() else {}
        cs = cls(indices, weights, info.get("gains", []), info.get("meta", {}))
        cs.check_dataset(dataset_len, fingerprint, str(path))
        return cs

    def check_dataset(self, dataset_len: int | None, fingerprint: str | None,
                      source: str = "coreset") -> None:
        m = self.meta
        if dataset_len is not None:
            if m.get("dataset_len") not in (None, dataset_len):
                raise CoresetError(f"{source} was made for a dataset of {m['dataset_len']} images,"
                                   f" but this dataset has {dataset_len}; select again with "
                                   "`rcs select` on this dataset")
            if len(self.indices) and (self.indices[0] < 0 or self.indices[-1] >= dataset_len):
                raise CoresetError(f"{source} has indices outside [0, {dataset_len})")
        if fingerprint is not None and m.get("fingerprint") not in (None, fingerprint):
            raise CoresetError(f"{source} was made for another dataset (fingerprint "
                               f"{m['fingerprint']} != {fingerprint}); select again on this one")


@dataclass
class SelectionContext:
    """Everything a selector may use. ``candidates`` and ``val`` index into ``dataset``."""

    dataset: Any
    """An rcs.data ImageDataset (images uint8 NHWC, optional labels)."""
    candidates: np.ndarray
    val: np.ndarray
    fraction: float
    seed: int = 0
    model: Any = None
    """The model being trained (RobustModel); selectors must not modify it."""
    augment: Any = None
    device: torch.device | str = "cpu"
    cfg: RunConfig | None = None
    epoch: int = 0

    @property
    def budget(self) -> int:
        return budget(self.fraction, len(self.candidates))

    def selectable(self) -> tuple[np.ndarray, int]:
        """Sorted candidate ids minus any validation id (a selector never returns one), and
        the number to pick: ``budget``, capped by how many remain."""
        cand = np.setdiff1d(np.asarray(self.candidates, dtype=np.int64),
                            np.asarray(self.val, dtype=np.int64).reshape(-1))
        return cand, int(min(self.budget, len(cand)))

    def base_meta(self, method: str) -> dict[str, Any]:
        ds = self.dataset
        return {"method": method, "fraction": self.fraction, "seed": self.seed,
                "epoch": self.epoch, "dataset_len": len(ds),
                "fingerprint": ds.fingerprint() if hasattr(ds, "fingerprint") else None,
                "num_candidates": int(len(self.candidates)), "num_val": int(len(self.val))}


@runtime_checkable
class Selector(Protocol):
    """``select(ctx) -> Coreset`` with exactly ``ctx.budget`` indices drawn from candidates."""

    name: str

    def select(self, ctx: SelectionContext) -> Coreset: ...


SELECTORS: dict[str, Callable[..., Selector]] = {}


def register_selector(name: str) -> Callable[[Callable[..., Selector]], Callable[..., Selector]]:
    def deco(factory: Callable[..., Selector]) -> Callable[..., Selector]:
        SELECTORS[name] = factory
        return factory

    return deco


def build_selector(name: str, cfg: RunConfig | None = None) -> Selector:
    """Instantiate the selector registered under ``name`` (``cfg`` passes its settings)."""
    load_selectors()
    if name not in SELECTORS:
        import difflib

        close = difflib.get_close_matches(name, list(SELECTORS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown selector '{name}'.{hint} "
                          f"Available: {', '.join(sorted(SELECTORS))}")
    return SELECTORS[name](cfg)


SELECTOR_MODULES = (
    "rcs.selection.simple",    # full, random
    "rcs.selection.rcs",       # rcs
    "rcs.selection.kcenter",   # kcenter
    "rcs.selection.gradnorm",  # gradnorm
    "rcs.selection.craig",     # craig
)
"""The selector registry's modules: a new selector is one file that calls
:func:`register_selector` plus one line here. Other packages register theirs through the
``rcs.selectors`` entry-point group (each entry point names a module to import)."""


def load_selectors() -> None:
    """Import every module that registers selectors: rcs's own, then installed plugins."""
    import importlib
    from importlib.metadata import entry_points

    for mod in SELECTOR_MODULES:
        importlib.import_module(mod)
    for ep in entry_points(group="rcs.selectors"):
        importlib.import_module(ep.value.split(":")[0])


def class_quotas(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, quota)``: each class's proportional share of ``k`` picks from items with
    ``labels``, rounded by largest remainder (ties to the lower class id), so the quotas sum to
    exactly ``k`` and differ from ``k * n_c / n`` by less than 1."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * k / len(labels)
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(-(share - quota), kind="stable")[:k - int(quota.sum())]] += 1
    return classes, quota


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
