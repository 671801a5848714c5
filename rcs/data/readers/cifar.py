"""CIFAR-10 / CIFAR-100, python version (the official pickle batches).

Expected layout (``data.root`` may be the parent folder or the batch folder itself)::

    <root>/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a pickled dict with ``b'data'`` (N, 3072) uint8 rows in CHW order and
``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100). Files are read with a restricted
unpickler that resolves only numpy's array-reconstruction globals: a pickle naming anything else
(``os.system``, arbitrary classes) is refused. With ``download=True`` the official archive is
fetched from https://www.cs.toronto.edu/~kriz/ and its MD5 checked; the batches themselves are
checked by their row counts after loading.
"""

from __future__ import annotations

import importlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rcs.data.dataset import ImageDataset
from rcs.data.readers.download import download_and_extract
from rcs.errors import DataError

# --------------------------------------------------------------------------- restricted unpickler
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric", "numpy")
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(m, n) for m in _NUMPY_MODULES for n in ("_reconstruct", "scalar", "_frombuffer")}
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
       ("builtins", "bytearray")}
)
"""(module, name) pairs a CIFAR pickle may reference: enough for dicts, lists, bytes, ndarrays."""


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy.core"):  # numpy >= 2 moved numpy.core to numpy._core
        try:
            return getattr(importlib.import_module("numpy._core" + module[10:]), name)
        except (ImportError, AttributeError):
            pass
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` only returns globals listed in :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return _resolve(module, name)


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (py2 strings decoded as latin1).

    A forbidden global, a truncated or a corrupt file raise :class:`DataError`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e})") from e
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if "is not allowed" in str(e):
            raise DataError(f"{path} is not a plain data pickle ({e}); refusing to load it. "
                            "Use the official dataset files.") from e
        raise DataError(f"{path} is corrupt or incomplete ({e}); delete it and download the "
                        "dataset again") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError) as e:
        raise DataError(f"{path} is corrupt or incomplete ({type(e).__name__}: {e}); delete "
                        "it and download the dataset again") from e


# --------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def layout(self) -> str:
        files = ", ".join((*self.train, *self.test, self.meta))
        return f"<root>/{self.folder}/{{{files}}}"


CIFAR10 = CifarSpec(
    "cifar10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a", tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",), "batches.meta", "labels", "label_names")
CIFAR100 = CifarSpec(
    "cifar100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "eb9058c3a382ffc7106e288f2f2d5f58", ("train",), ("test",), "meta", "fine_labels",
    "fine_label_names")
SPECS = {"cifar10": CIFAR10, "cifar100": CIFAR100}

ROWS_PER_FILE: dict[str, int] = {**{f"data_batch_{i}": 10000 for i in range(1, 6)},
                                 "test_batch": 10000, "train": 50000, "test": 10000}
"""Rows each official file holds; fewer rows means an incomplete file."""


def _locate(root: Path, spec: CifarSpec, download: bool) -> Path:
    folder = root if root.name == spec.folder else root / spec.folder
    if not folder.is_dir() and download:
        download_and_extract(spec.url, root, spec.filename, spec.md5)
    if not folder.is_dir():
        raise DataError(f"{spec.name}: folder {folder} not found. Expected {spec.layout()} (the "
                        f"python version from {spec.url}); set data.root to the folder holding "
                        f"{spec.folder}/ or set data.download=true.")
    return folder


def _text(v: Any) -> str:
    return v.decode("latin1") if isinstance(v, bytes) else str(v)


def _load_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    raw = safe_unpickle(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dict; expected the files of "
                        f"{spec.url}")
    d = {_text(k): v for k, v in raw.items()}
    if "data" not in d or spec.label_key not in d:
        raise DataError(f"{path} lacks 'data' or '{spec.label_key}' (keys: {sorted(d)}); is it a "
                        f"{spec.name} file?")
    data = np.asarray(d["data"])
    labels = np.asarray(d[spec.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' has shape {data.shape} / {data.dtype}, expected "
                        "(N, 3072) uint8")
    expected = ROWS_PER_FILE.get(path.name)
    if len(labels) != len(data) or (expected is not None and len(data) != expected):
        raise DataError(f"{path} is incomplete: {len(data)} images and {len(labels)} labels, "
                        f"expected {expected}. Delete {path.parent} and download it again.")
    return data, labels


def read_cifar(root: str | Path, split: str = "train", variant: str = "cifar10",
               download: bool = False) -> ImageDataset:
    """CIFAR-10 (``variant='cifar10'``) or CIFAR-100 ``train`` / ``test`` as an ImageDataset."""
    spec = SPECS[variant]
    if split not in ("train", "test"):
        raise DataError(f"{spec.name} has splits 'train' and 'test', not {split!r}")
    folder = _locate(Path(root), spec, download)
    names = spec.train if split == "train" else spec.test
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{spec.name}: missing {', '.join(missing)} in {folder}. Expected "
                        f"{spec.layout()}; delete the folder and download {spec.url} again.")
    parts = [_load_batch(folder / n, spec) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    classes = None
    if (folder / spec.meta).is_file():
        meta = safe_unpickle(folder / spec.meta)
        if isinstance(meta, dict):
            meta = {_text(k): v for k, v in meta.items()}
            if spec.names_key in meta:
                classes = [_text(c) for c in meta[spec.names_key]]
    if classes is None:
        classes = [str(i) for i in range(10 if variant == "cifar10" else 100)]
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{spec.name} {split}: labels outside 0..{len(classes) - 1}")
    return ImageDataset(images, labels, name=f"{spec.name}-{split}", classes=classes)
