"""Generic ``.npz`` datasets.

``data.root`` is the ``.npz`` file (or a folder holding exactly one). Recognised keys:

* ``x_train``/``y_train`` and ``x_test``/``y_test``: split ``train`` / ``test``;
* ``images``/``labels`` or ``x``/``y``: a single (``train``) split;
* optional ``label_names`` or ``classes``: class names (a plain string array).

Images are uint8 NHWC with 3 channels; (N, H, W) and (N, H, W, 1) grayscale are repeated to
3 channels and NCHW (N, 3, H, W) is transposed. Labels are optional. Files larger than
:data:`CACHE_ABOVE_BYTES` are decoded once into an ``.npy`` cache and memory-mapped; smaller
ones are loaded into RAM. Files are opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from rcs.data.cache import CacheWriter, cached_arrays, default_cache_dir, source_signature
from rcs.data.dataset import ImageDataset
from rcs.errors import DataError

CACHE_ABOVE_BYTES = 1 << 30
KEYS = {"train": [("x_train", "y_train"), ("images", "labels"), ("x", "y")],
        "test": [("x_test", "y_test")]}
LAYOUT = ("an .npz with x_train/y_train (+ x_test/y_test) or images/labels or x/y: uint8 NHWC "
          "images, int labels, optional label_names")


def _resolve(root: Path) -> Path:
    if root.is_file():
        return root
    if root.is_dir():
        found = sorted(root.glob("*.npz"))
        if len(found) == 1:
            return found[0]
        raise DataError(f"npz: {root} holds {len(found)} .npz files; set data.root to the file "
                        f"itself ({LAYOUT})")
    raise DataError(f"npz: {root} not found; set data.root to {LAYOUT}")


def _to_nhwc(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(f"npz: {path}['{key}'] is {x.dtype}; images must be uint8 0..255")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"npz: {path}['{key}'] has shape {x.shape}; expected (N, H, W, 3)")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise DataError(f"npz: {path}['{key}'] has shape {x.shape}; expected (N, H, W, 3)")
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataError(f"npz: {path}['{key}'] holds no images (shape {x.shape}); expected "
                        f"{LAYOUT}")
    return np.ascontiguousarray(x)


def _keys(files: list[str], split: str, path: Path) -> tuple[str, str | None]:
    if split not in KEYS:
        raise DataError(f"npz datasets have splits 'train' and 'test', not {split!r}")
    for xk, yk in KEYS[split]:
        if xk in files:
            return xk, (yk if yk in files else None)
    want = " or ".join(k for k, _ in KEYS[split])
    raise DataError(f"npz: {path} has no {split} images (needs key {want}; has {files}). "
                    f"Expected {LAYOUT}.")


def _labels(y: np.ndarray | None, n: int, path: Path, key: str = "labels",
            classes: list[str] | None = None) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or len(y) != n:
        raise DataError(f"npz: {path} labels have dtype {y.dtype} and length {len(y)}; "
                        f"expected {n} integers")
    y = y.astype(np.int64)
    check_labels(y, f"npz: {path}['{key}']", classes)
    return y


def check_labels(y: np.ndarray, where: str, classes: list[str] | None = None) -> None:
    """Class ids must be 0..C-1 (C = ``len(classes)`` when the file names its classes): a
    negative id or one past the class names is a DataError; an id range with an empty class or
    a top class far rarer than the others (a stray label that adds a class) is warned about."""
    from rcs.errors import warn

    if len(y) == 0:
        return
    neg = np.flatnonzero(y < 0)
    if len(neg):
        raise DataError(f"{where} has {len(neg)} negative label(s) (e.g. {int(y[neg[0]])} at "
                        f"index {int(neg[0])}); labels must be class ids 0..C-1. For unlabelled "
                        "images leave the labels out of the file")
    top = int(y.max())
    if classes is not None:
        if top >= len(classes):
            bad = np.flatnonzero(y >= len(classes))
            raise DataError(f"{where} has {len(bad)} label(s) >= {len(classes)} (e.g. {top} at "
                            f"index {int(bad[0])}), but the file names {len(classes)} classes "
                            f"(ids 0..{len(classes) - 1}); fix the labels or the class names")
        return
    counts = np.bincount(y, minlength=top + 1)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        warn(f"{where}: labels run 0..{top} but class(es) {empty[:10].tolist()} have no image, "
             f"so the dataset gets {top + 1} classes; labels must be 0..C-1 (1-based labels?)")
    elif top >= 2 and counts[top] * 4 <= np.median(counts[:top]):
        warn(f"{where}: class {top} has {counts[top]} image(s) while the median class has "
             f"{int(np.median(counts[:top]))}; a stray label gives the dataset {top + 1} classes. "
             "Check the labels (ids 0..C-1), or add label_names to the file")


def _classes(z: np.lib.npyio.NpzFile) -> list[str] | None:
    for k in ("label_names", "classes"):
        if k in z.files:
            try:
                return [str(c) for c in z[k].tolist()]
            except ValueError:  # an object array would need pickle: ignore it
                return None
    return None


def read_npz(root: str | Path, split: str = "train", cache_dir: str | Path = "") -> ImageDataset:
    """Split ``train`` or ``test`` of a generic npz file as an ImageDataset."""
    path = _resolve(Path(root))
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"npz: cannot read {path} ({e}); expected {LAYOUT}") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"npz: {path} is a single array, not an .npz archive ({LAYOUT})")
    with z:
        xk, yk = _keys(z.files, split, path)
        classes = _classes(z)
        if path.stat().st_size <= CACHE_ABOVE_BYTES:
            x = _to_nhwc(z[xk], path, xk)
            y = _labels(z[yk] if yk else None, len(x), path, yk or "", classes)
            return ImageDataset(x, y, name=f"{path.stem}-{split}", classes=classes)

    def build(writer: CacheWriter) -> None:
        with np.load(path, allow_pickle=False) as zz:
            x = _to_nhwc(zz[xk], path, xk)
            y = _labels(zz[yk] if yk else None, len(x), path, yk or "", classes)
        out = writer.allocate(*x.shape[:3])
        out[:] = x
        writer.set_labels(y)

    images, labels = cached_arrays(default_cache_dir(path, cache_dir), f"npz_{path.stem}_{split}",
                                   source_signature([path]), build)
    return ImageDataset(images, labels, name=f"{path.stem}-{split}", classes=classes)
