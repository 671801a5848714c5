"""Common-corruption accuracy from CIFAR-10-C / CIFAR-100-C files (Hendrycks & Dietterich 2019).

Layout of the released archives (and what ``robustbench.data.load_cifar10c`` reads)::

    <root>/<corruption>.npy   uint8 [5 N, H, W, 3]: severities 1..5 stacked, N images each
                              (N = 10,000 for CIFAR-10-C / CIFAR-100-C)
    <root>/labels.npy         int [5 N] (the test labels repeated per severity) or [N]

Severity ``s`` of a corruption is rows ``(s - 1) N ... s N - 1``; ``n_ex`` keeps the first
``n_ex`` of them (as RobustBench's ``n_examples``). Files are memory-mapped. Reported, as the
RobustSSL code does (``PUBLISHED_METHODS.md`` A3.3): the accuracy of every (corruption, severity),
the
mean over corruptions for each severity, and the overall mean (of the per-severity means).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.config.schema import CORRUPTIONS
from rcs.data import to_float
from rcs.errors import DataError
from rcs.utils.progress import bar

SEVERITIES = (1, 2, 3, 4, 5)


def _layout_hint(root: Path) -> str:
    return (f"expected CIFAR-10-C style files in '{root}': <corruption>.npy (uint8 "
            "[5*N, 32, 32, 3], severities 1-5 stacked) and labels.npy; download CIFAR-10-C / "
            "CIFAR-100-C and set eval.corruptions_root (or --corruptions-root)")


def load_labels(root: Path) -> np.ndarray:
    path = root / "labels.npy"
    if not path.is_file():
        raise DataError(f"'{path}' not found; {_layout_hint(root)}")
    return np.asarray(np.load(path, mmap_mode="r")).astype(np.int64).reshape(-1)


def load_corruption(root: str | Path, name: str, severity: int, n_ex: int = 0,
                    labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 NHWC, labels int64)`` of ``name`` at ``severity`` (1..5)."""
    root = Path(root)
    if severity not in SEVERITIES:
        raise DataError(f"severity {severity} is not one of 1..5")
    path = root / f"{name}.npy"
    if not path.is_file():
        raise DataError(f"'{path}' not found; {_layout_hint(root)}")
    images = np.load(path, mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 \
            or images.shape[0] % 5:
        raise DataError(f"'{path}' has shape {images.shape} and dtype {images.dtype}; "
                        + _layout_hint(root))
    n = images.shape[0] // 5
    labels = load_labels(root) if labels is None else labels
    if len(labels) not in (n, 5 * n):
        raise DataError(f"labels.npy has {len(labels)} entries but '{path}' holds 5 x {n} "
                        "images; they must match (5*N or N labels)")
    lo = (severity - 1) * n
    keep = n if not n_ex else min(n_ex, n)
    y = labels[lo:lo + keep] if len(labels) == 5 * n else labels[:keep]
    return np.ascontiguousarray(images[lo:lo + keep]), np.asarray(y, dtype=np.int64)


@torch.no_grad()
def _accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int,
              device: torch.device) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[s:s + batch_size])).permute(0, 3, 1, 2).to(device)
        y = torch.from_numpy(labels[s:s + batch_size]).to(device)
        correct += int((model(to_float(x)).argmax(1) == y).sum())
    return correct / max(len(images), 1)


def corruption_accuracy(model: nn.Module, root: str | Path,
                        corruptions: list[str] | tuple[str, ...] = CORRUPTIONS,
                        severities: list[int] | tuple[int, ...] = SEVERITIES, n_ex: int = 0,
                        batch_size: int = 256, device: torch.device | str = "cpu"
                        ) -> dict[str, Any]:
    """Accuracy per corruption and severity, per severity (mean over corruptions), and mean."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corruptions folder '{root}' does not exist; {_layout_hint(root)}")
    corruptions = list(corruptions) or list(CORRUPTIONS)
    missing = [c for c in corruptions if not (root / f"{c}.npy").is_file()]
    if missing:
        raise DataError(f"{len(missing)} corruption files missing in '{root}': "
                        f"{', '.join(m + '.npy' for m in missing)}; {_layout_hint(root)} "
                        "(or list the present ones in eval.corruptions)")
    device = torch.device(device)
    labels = load_labels(root)
    table: dict[str, dict[str, float]] = {}
    pbar = bar(len(corruptions) * len(severities), desc="corruptions", unit="set")
    n_images = 0
    for c in corruptions:
        table[c] = {}
        for s in severities:
            x, y = load_corruption(root, c, s, n_ex, labels)
            table[c][str(s)] = _accuracy(model, x, y, batch_size, device)
            n_images = len(y)
            pbar.update(1)
    pbar.close()
    per_sev = {str(s): float(np.mean([table[c][str(s)] for c in corruptions]))
               for s in severities}
    return {"accuracy": float(np.mean(list(per_sev.values()))), "per_severity": per_sev,
            "per_corruption": table,
            "per_corruption_mean": {c: float(np.mean(list(v.values()))) for c, v in table.items()},
            "corruptions": corruptions, "severities": list(severities),
            "n_per_severity": n_images}
