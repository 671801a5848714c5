"""Image folders (one sub-folder per class), decoded with PIL into a memory-mapped cache.

Expected layout::

    <root>/<class_name>/**/*.png|jpg|jpeg       (split "train"), or
    <root>/<split>/<class_name>/**/*.png|jpg|jpeg  (when <root>/<split> exists)

Classes are the sorted sub-folder names (hidden ones skipped), labels their positions. Every
image is converted to RGB and resized to ``image_size`` x ``image_size`` (bicubic) once; the
result is cached as an ``.npy`` (see :mod:`rcs.data.cache`) and memory-mapped afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from rcs.data.cache import CacheWriter, cached_arrays, default_cache_dir
from rcs.data.dataset import ImageDataset
from rcs.errors import DataError
from rcs.utils.progress import progress

EXTENSIONS = (".png", ".jpg", ".jpeg")
LAYOUT = "<root>/<class_name>/*.png|jpg|jpeg (or <root>/<split>/<class_name>/...)"


def list_images(folder: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """(classes, files, labels) of a class-per-folder tree, in sorted order."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        found = sorted(p for p in (folder / name).rglob("*")
                       if p.suffix.lower() in EXTENSIONS and p.is_file())
        files += found
        labels += [c] * len(found)
    return classes, files, np.asarray(labels, dtype=np.int64)


def _signature(folder: Path, files: list[Path], size: int) -> dict[str, object]:
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {"n": len(files), "size": size, "digest": h.hexdigest()}


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [size, size, 3] (RGB, bicubic resize)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"folder: cannot decode image {path} ({e}); remove or replace it") from e


def read_folder(root: str | Path, split: str = "train", image_size: int = 32,
                cache_dir: str | Path = "") -> ImageDataset:
    """A class-per-folder image tree resized to ``image_size`` as an ImageDataset."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a folder; expected {LAYOUT}")
    folder = root / split if (root / split).is_dir() else root
    if folder == root and split != "train":
        raise DataError(f"folder: {root}/{split} not found; expected {LAYOUT}")
    classes, files, labels = list_images(folder)
    if not files:
        raise DataError(f"folder: no .png/.jpg/.jpeg images found under {folder}; expected "
                        f"{LAYOUT}")

    def build(writer: CacheWriter) -> None:
        out = writer.allocate(len(files), image_size, image_size)
        for i, f in enumerate(progress(files, desc=f"decode {folder.name}", unit="img")):
            out[i] = load_image(f, image_size)
        writer.set_labels(labels)

    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    stem = f"folder_{root.name}_{tag}_{split}_{image_size}"
    images, cached_labels = cached_arrays(default_cache_dir(root, cache_dir), stem,
                                          _signature(folder, files, image_size), build)
    return ImageDataset(images, cached_labels, name=f"{root.name}-{split}", classes=classes)
