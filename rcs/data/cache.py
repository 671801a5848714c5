"""Decoded-array cache: build an NHWC ``.npy`` once per node, then memory-map it everywhere.

Formats that cannot be memory-mapped as they are (npz members, PNG folders, concatenations) are
decoded once into ``<cache_dir>/<stem>.images.npy`` + ``<stem>.labels.npy``. The build runs under
an exclusive ``fcntl`` lock on ``<stem>.lock`` so that only one process per node decodes; the
others wait and then open the finished files with ``np.load(mmap_mode="r")``. Files are written
atomically (temp + rename) and a ``<stem>.json`` written last records the source signature, so a
killed build or changed source is rebuilt, never half-read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from rcs.errors import DataError
from rcs.utils.atomic import atomic_path, atomic_write_text

CACHE_VERSION = 1


def default_cache_dir(root: str | Path, cache_dir: str | Path = "") -> Path:
    """``cache_dir`` if set, else ``<root>/.rcs_cache`` (beside ``root`` when it is a file)."""
    if cache_dir:
        return Path(cache_dir)
    root = Path(root)
    return (root.parent if root.is_file() else root) / ".rcs_cache"


def source_signature(files: Sequence[str | Path]) -> list[list[object]]:
    """``[name, size, mtime_ns]`` of each source file: a cache built from other files is stale."""
    sig: list[list[object]] = []
    for f in files:
        st = os.stat(f)
        sig.append([Path(f).name, st.st_size, st.st_mtime_ns])
    return sig


@contextlib.contextmanager
def node_lock(path: str | Path) -> Iterator[None]:
    """Exclusive advisory lock (``fcntl.flock``) on ``path``, held for the ``with`` block."""
    path = Path(path)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class CacheWriter:
    """Handed to a build function: allocate the image array on disk, then fill it chunk by chunk."""

    def __init__(self, images_tmp: Path, labels_tmp: Path):
        self._images_tmp = images_tmp
        self._labels_tmp = labels_tmp
        self.images: np.memmap | None = None
        self.labels_written = False

    def allocate(self, n: int, h: int, w: int) -> np.memmap:
        """A writable ``uint8 [n, h, w, 3]`` memmap backed by the temp ``.npy`` file."""
        self.images = np.lib.format.open_memmap(self._images_tmp, mode="w+", dtype=np.uint8,
                                                shape=(n, h, w, 3))
        return self.images

    def set_labels(self, labels: np.ndarray | None) -> None:
        """Store the int64 labels (``None`` for an unlabeled dataset)."""
        if labels is not None:
            with open(self._labels_tmp, "wb") as f:
                np.save(f, np.asarray(labels, dtype=np.int64))
        self.labels_written = labels is not None


def _cache_files(cache_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return (cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy",
            cache_dir / f"{stem}.json")


def _valid(cache_dir: Path, stem: str, signature: object) -> dict | None:
    img, _, meta = _cache_files(cache_dir, stem)
    if not (img.exists() and meta.exists()):
        return None
    try:
        info = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if info.get("version") != CACHE_VERSION or info.get("signature") != signature:
        return None
    return info


def _open(cache_dir: Path, stem: str, info: dict) -> tuple[np.ndarray, np.ndarray | None]:
    img, lab, _ = _cache_files(cache_dir, stem)
    try:
        images = np.load(img, mmap_mode="r")
        labels = np.load(lab) if info.get("labels") else None
    except (OSError, ValueError) as e:
        raise DataError(f"cache {img} is unreadable ({e}); delete {cache_dir} and retry") from e
    return images, labels


def cached_arrays(cache_dir: str | Path, stem: str, signature: object,
                  build: Callable[[CacheWriter], None]) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-mapped images (read-only) and labels of cache ``stem``, building it if needed.

    ``build(writer)`` must call ``writer.allocate(n, h, w)``, fill the returned memmap, and call
    ``writer.set_labels(labels)``. It runs at most once per node for a given ``signature``.
    """
    cache_dir = Path(cache_dir)
    signature = json.loads(json.dumps(signature))  # tuples -> lists, as stored
    info = _valid(cache_dir, stem, signature)
    if info is not None:
        return _open(cache_dir, stem, info)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = cache_dir / f"{stem}.lock"
        lock.touch(exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot write the decoded-data cache in {cache_dir} ({e}); point "
                        f"data.cache_dir at a writable folder (--set data.cache_dir=/path)") from e
    img_path, lab_path, meta_path = _cache_files(cache_dir, stem)
    with node_lock(lock):
        info = _valid(cache_dir, stem, signature)  # another process may have finished it
        if info is None:
            meta_path.unlink(missing_ok=True)
            with atomic_path(img_path) as img_tmp, atomic_path(lab_path) as lab_tmp:
                writer = CacheWriter(img_tmp, lab_tmp)
                build(writer)
                if writer.images is None:
                    raise DataError(f"cache {stem}: the build function allocated no images")
                writer.images.flush()
                writer.images = None
                if not writer.labels_written:
                    with open(lab_tmp, "wb") as f:
                        np.save(f, np.zeros(0, dtype=np.int64))
            info = {"version": CACHE_VERSION, "signature": signature,
                    "labels": writer.labels_written}
            atomic_write_text(meta_path, json.dumps(info))
    return _open(cache_dir, stem, info)
