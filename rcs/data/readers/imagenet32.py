"""Downsampled ImageNet-1K 32x32 (Chrabaszcz et al., 2017), npz version.

Expected layout (subfolders as distributed, or every file flat in ``data.root``)::

    <root>/Imagenet32_train_npz/train_data_batch_1.npz .. train_data_batch_10.npz
    <root>/Imagenet32_val_npz/val_data.npz

Each npz holds ``data`` (N, 3072) uint8 rows in CHW order, ``labels`` 1..1000 (-> 0..999) and
optionally ``mean``. npz members cannot be memory-mapped, so each split is decoded once per node
into an NHWC ``.npy`` cache (one batch file at a time, so peak RAM is about one file) under a
file lock, then opened with ``np.load(mmap_mode="r")`` by every process.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from rcs.data.cache import CacheWriter, cached_arrays, default_cache_dir, source_signature
from rcs.data.dataset import ImageDataset
from rcs.errors import DataError
from rcs.utils.progress import progress

NUM_CLASSES = 1000
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILES = ("val_data.npz",)
SUBFOLDERS = {"train": "Imagenet32_train_npz", "test": "Imagenet32_val_npz"}
LAYOUT = ("<root>/Imagenet32_train_npz/train_data_batch_{1..10}.npz and "
          "<root>/Imagenet32_val_npz/val_data.npz (or all files directly in <root>), from "
          "https://image-net.org/download-images (Downsampled ImageNet 32x32, npz)")


def _find(root: Path, split: str) -> list[Path]:
    names = TRAIN_FILES if split == "train" else VAL_FILES
    sub = SUBFOLDERS[split]
    candidates = [root / sub, root, root.parent / sub]
    for folder in candidates:
        if (folder / names[0]).is_file():
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise DataError(f"imagenet32: {folder} lacks {', '.join(missing)}. Expected "
                                f"{LAYOUT}.")
            return [folder / n for n in names]
    raise DataError(f"imagenet32: no {names[0]} under {root}. Expected {LAYOUT}; set data.root "
                    "to the folder holding them.")


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"imagenet32: {path} is corrupt or incomplete ({e}); download it again") \
            from e
    if "data" not in z.files or "labels" not in z.files:
        raise DataError(f"imagenet32: {path} lacks 'data' or 'labels' (has {z.files})")
    return z


def _member(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"imagenet32: {path}['{key}'] is corrupt ({e}); download it again") from e


def _build(files: list[Path], writer: CacheWriter) -> None:
    counts = []
    for f in files:  # labels only: cheap, gives N before any image is decoded
        with _open_npz(f) as z:
            counts.append(len(_member(z, "labels", f)))
    out = None
    labels = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for f, n in progress(list(zip(files, counts)), desc="imagenet32 decode", unit="file"):
        with _open_npz(f) as z:
            data = _member(z, "data", f)
            y = _member(z, "labels", f).astype(np.int64).reshape(-1) - 1
        side = math.isqrt(data.shape[1] // 3) if data.ndim == 2 else 0
        if data.dtype != np.uint8 or data.ndim != 2 or 3 * side * side != data.shape[1] \
                or len(data) != n:
            raise DataError(f"imagenet32: {f}['data'] has shape {data.shape} / {data.dtype}, "
                            f"expected ({n}, 3*S*S) uint8")
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(f"imagenet32: {f} has labels outside 1..{NUM_CLASSES}")
        if out is None:
            out = writer.allocate(sum(counts), side, side)
        elif out.shape[1] != side:
            raise DataError(f"imagenet32: {f} has {side}x{side} images, others {out.shape[1]}")
        out[start:start + n] = data.reshape(n, 3, side, side).transpose(0, 2, 3, 1)
        labels[start:start + n] = y
        start += n
        del data
    writer.set_labels(labels)


def read_imagenet32(root: str | Path, split: str = "train", cache_dir: str | Path = ""
                    ) -> ImageDataset:
    """ImageNet-32 ``train`` (1.28M) or ``test`` (= the 50k validation images), memory-mapped."""
    if split not in ("train", "test", "val"):
        raise DataError(f"imagenet32 has splits 'train' and 'test' (validation), not {split!r}")
    split = "test" if split == "val" else split
    root = Path(root)
    files = _find(root, split)
    images, labels = cached_arrays(default_cache_dir(root, cache_dir), f"imagenet32_{split}",
                                   source_signature(files), lambda w: _build(files, w))
    return ImageDataset(images, labels, name=f"imagenet32-{split}",
                        classes=[str(i) for i in range(NUM_CLASSES)])
