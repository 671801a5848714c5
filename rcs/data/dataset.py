"""In-memory or memory-mapped image datasets with vectorised batch access.

An :class:`ImageDataset` wraps a uint8 NHWC numpy array (possibly a read-only ``np.memmap`` or a
strided view of one) and optional int64 labels. Batches are gathered with one fancy-indexing call
(indices sorted first, so a memmap is read front to back, then put back in the requested order)
and returned as torch uint8 NCHW tensors; augmentation happens later, on the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from rcs.errors import DataError

FINGERPRINT_SAMPLES = 1000
"""Number of images (evenly strided over the dataset) hashed by :meth:`ImageDataset.fingerprint`."""


def _as_index(idx: np.ndarray | Sequence[int] | torch.Tensor, n: int) -> np.ndarray:
    """Int64 copy of ``idx``; negative entries count from the end; out of range: IndexError."""
    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean mask of shape {arr.shape} does not match {n} images")
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.astype(np.int64, copy=True).reshape(-1)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise IndexError(f"index out of range for a dataset of {n} images "
                         f"(got min {arr.min()}, max {arr.max()})")
    arr[arr < 0] += n
    return arr


class ImageDataset:
    """Images (uint8 NHWC) and optional labels (int64, ``-1`` = unlabeled).

    ``subset(idx)`` returns a dataset that shares the image memory with this one: it keeps the
    base array plus the positions it exposes (``parent_indices`` records the positions in the
    dataset it was taken from). ``images`` on such a subset materialises a copy; code that must
    not copy should go through ``get_batch``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, name: str = "",
                 classes: Sequence[str] | None = None, *, _positions: np.ndarray | None = None):
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
            shape = getattr(images, "shape", None)
            raise DataError(f"dataset {name!r}: images must be a uint8 NHWC array with 3 channels, "
                            f"got shape {shape}")
        if images.dtype != np.uint8:
            raise DataError(f"dataset {name!r}: images must be uint8, got {images.dtype}")
        self._base = images
        self._pos = None if _positions is None else np.asarray(_positions, dtype=np.int64)
        n = len(self._base) if self._pos is None else len(self._pos)
        if labels is not None:
            labels = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
            if len(labels) != n:
                raise DataError(f"dataset {name!r}: {len(labels)} labels for {n} images")
        self.labels: np.ndarray | None = labels
        self.name = name
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.parent_indices: np.ndarray | None = None
        self._num_classes: int | None = None  # inherited by subsets without class names
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self._base) if self._pos is None else len(self._pos)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self._base.shape[1:])  # type: ignore[return-value]

    @property
    def images(self) -> np.ndarray:
        """The NHWC images (the base array itself unless this is a gathered subset)."""
        if self._pos is None:
            return self._base
        return self._gather(self._pos)

    @property
    def num_classes(self) -> int:
        """``len(classes)`` when known, else ``max(label) + 1`` of the parent (0 without labels)."""
        if self.classes is not None:
            return len(self.classes)
        if self._num_classes is not None:
            return self._num_classes
        if self.labels is None or len(self.labels) == 0:
            return 0
        return int(self.labels.max()) + 1

    def _gather(self, pos: np.ndarray) -> np.ndarray:
        """Images at base positions ``pos`` (read in sorted order, returned in ``pos`` order)."""
        if len(pos) == 0:
            return np.empty((0, *self._base.shape[1:]), dtype=np.uint8)
        order = np.argsort(pos, kind="stable")
        sorted_pos = pos[order]
        if sorted_pos[-1] - sorted_pos[0] + 1 == len(pos) and np.all(np.diff(sorted_pos) == 1):
            block = np.asarray(self._base[sorted_pos[0]:sorted_pos[-1] + 1])
        else:
            block = np.asarray(self._base[sorted_pos])
        out = np.empty(block.shape, dtype=np.uint8)
        out[order] = block
        return out

    def _base_positions(self, idx: np.ndarray) -> np.ndarray:
        return idx if self._pos is None else self._pos[idx]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """``(uint8 [3, H, W], label or -1)``, usable with a torch DataLoader."""
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        i %= n
        pos = i if self._pos is None else int(self._pos[i])
        img = np.array(self._base[pos], dtype=np.uint8, copy=True).transpose(2, 0, 1)
        label = -1 if self.labels is None else int(self.labels[i])
        return torch.from_numpy(np.ascontiguousarray(img)), label

    def get_batch(self, idx: np.ndarray | Sequence[int] | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Vectorised gather: ``(uint8 [B, 3, H, W], int64 [B] or None)`` in ``idx`` order."""
        idx = _as_index(idx, len(self))
        x = self._gather(self._base_positions(idx))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        y = None if self.labels is None else torch.from_numpy(self.labels[idx].copy())
        return xt, y

    # ------------------------------------------------------------------ derived datasets
    def subset(self, idx: np.ndarray | Sequence[int] | torch.Tensor) -> ImageDataset:
        """A dataset of the images at ``idx`` sharing memory with this one.

        A contiguous ascending range becomes a plain slice (a numpy view); any other index list
        is kept as positions into the shared base array. ``parent_indices`` holds ``idx``.
        """
        idx = _as_index(idx, len(self))
        labels = None if self.labels is None else self.labels[idx].copy()
        pos = self._base_positions(idx)
        contiguous = len(pos) > 0 and bool(np.all(np.diff(pos) == 1))
        if contiguous:
            sub = ImageDataset(self._base[pos[0]:pos[-1] + 1], labels, self.name, self.classes)
        else:
            sub = ImageDataset(self._base, labels, self.name, self.classes, _positions=pos)
        sub.parent_indices = idx
        sub._num_classes = self.num_classes
        return sub

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """sha256 over N, the image shape, a hash of the labels and ~1000 strided images.

        Cheap at ImageNet scale (reads ~3 MB); identifies a dataset (and its order) for coreset
        and checkpoint compatibility checks.
        """
        if self._fingerprint is None:
            n = len(self)
            h = hashlib.sha256()
            h.update(f"rcs-dataset-v1|n={n}|shape={self.image_shape}|".encode())
            if self.labels is None:
                h.update(b"labels=none|")
            else:
                h.update(b"labels=")
                h.update(hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()).digest())
            if n:
                sample = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLES))
                                   .round().astype(np.int64))
                h.update(np.ascontiguousarray(self._gather(self._base_positions(sample))).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        lab = "unlabeled" if self.labels is None else f"{self.num_classes} classes"
        return f"ImageDataset(name={self.name!r}, n={len(self)}, shape={self.image_shape}, {lab})"
