"""STL-10, binary version, memory-mapped.

Expected layout (``data.root`` may be the parent folder or ``stl10_binary`` itself)::

    <root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin}
                        (+ class_names.txt, optional)

``*_X.bin`` are raw uint8 images of 3x96x96, each channel stored column-major: reshaped to
(N, 3, 96, 96) the last two axes are (W, H). The files are memory-mapped and exposed as the
NHWC view ``raw.transpose(0, 3, 2, 1)`` (no copy). ``*_y.bin`` hold labels 1..10 (-> 0..9).
Splits: ``train`` (5,000), ``test`` (8,000), ``unlabeled`` (100,000, labels -1) and
``train+unlabeled``, which is decoded once into an NHWC cache (see :mod:`rcs.data.cache`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcs.data.cache import cached_arrays, default_cache_dir, source_signature
from rcs.data.dataset import ImageDataset
from rcs.data.readers.download import download_and_extract
from rcs.errors import DataError
from rcs.utils.progress import progress

FOLDER = "stl10_binary"
URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
ROWS: dict[str, int] = {"train": 5000, "test": 8000, "unlabeled": 100000}
"""Images per split in the official files; other counts mean an incomplete download."""
LAYOUT = (f"<root>/{FOLDER}/{{train_X.bin, train_y.bin, test_X.bin, test_y.bin, "
          f"unlabeled_X.bin}} (from {URL})")


def _locate(root: Path, download: bool) -> Path:
    folder = root if root.name == FOLDER else root / FOLDER
    if not folder.is_dir() and download:
        download_and_extract(URL, root, URL.rsplit("/", 1)[-1], MD5)
    if not folder.is_dir():
        raise DataError(f"stl10: folder {folder} not found. Expected {LAYOUT}; set data.root to "
                        f"the folder holding {FOLDER}/ or set data.download=true.")
    return folder


def _need(folder: Path, names: list[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"stl10: missing {', '.join(missing)} in {folder}. Expected {LAYOUT}.")


def open_images(path: Path, split: str) -> np.ndarray:
    """Read-only NHWC view of an STL-10 ``*_X.bin`` file (memory-mapped, column-major decoded)."""
    size = path.stat().st_size
    n = size // IMAGE_BYTES
    if size % IMAGE_BYTES or (split in ROWS and n != ROWS[split]):
        raise DataError(f"stl10: {path} has {size} bytes = {size / IMAGE_BYTES:.2f} images, "
                        f"expected {ROWS.get(split, '?')} images of {IMAGE_BYTES} bytes; the "
                        f"file is incomplete: delete it and download {URL} again.")
    if n == 0:
        return np.zeros((0, SIDE, SIDE, 3), np.uint8)
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, SIDE, SIDE))
    return raw.transpose(0, 3, 2, 1)  # (N, C, W, H) -> (N, H, W, C)


def read_labels(path: Path, n: int) -> np.ndarray:
    """Labels 1..10 of an ``*_y.bin`` file as int64 0..9."""
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(y) != n:
        raise DataError(f"stl10: {path} has {len(y)} labels for {n} images; delete it and "
                        f"download {URL} again.")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"stl10: {path} has labels outside 1..10")
    return y


def _classes(folder: Path) -> list[str]:
    f = folder / "class_names.txt"
    if f.is_file():
        names = [s.strip() for s in f.read_text().splitlines() if s.strip()]
        if len(names) == 10:
            return names
    return list(CLASSES)


def _split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    if split == "unlabeled":
        _need(folder, ["unlabeled_X.bin"])
        return open_images(folder / "unlabeled_X.bin", split), None
    _need(folder, [f"{split}_X.bin", f"{split}_y.bin"])
    x = open_images(folder / f"{split}_X.bin", split)
    return x, read_labels(folder / f"{split}_y.bin", len(x))


def read_stl10(root: str | Path, split: str = "train", download: bool = False,
               cache_dir: str | Path = "") -> ImageDataset:
    """STL-10 ``train`` / ``test`` / ``unlabeled`` / ``train+unlabeled`` as an ImageDataset."""
    if split not in ("train", "test", "unlabeled", "train+unlabeled"):
        raise DataError(f"stl10 has splits train, test, unlabeled, train+unlabeled, not {split!r}")
    folder = _locate(Path(root), download)
    classes = _classes(folder)
    if split != "train+unlabeled":
        x, y = _split(folder, split)
        return ImageDataset(x, y, name=f"stl10-{split}", classes=classes)
    xt, yt = _split(folder, "train")
    xu, _ = _split(folder, "unlabeled")
    files = [folder / n for n in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")]

    def build(writer) -> None:  # noqa: ANN001 - CacheWriter
        out = writer.allocate(len(xt) + len(xu), SIDE, SIDE)
        out[:len(xt)] = xt
        step = 4096
        for s in progress(range(0, len(xu), step), desc="stl10 train+unlabeled cache",
                          total=-(-len(xu) // step)):
            out[len(xt) + s:len(xt) + s + step] = xu[s:s + step]
        writer.set_labels(np.concatenate([yt, np.full(len(xu), -1, np.int64)]))

    images, labels = cached_arrays(default_cache_dir(root, cache_dir), "stl10_train+unlabeled",
                                   source_signature(files), build)
    return ImageDataset(images, labels, name="stl10-train+unlabeled", classes=classes)
