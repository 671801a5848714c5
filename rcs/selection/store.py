"""GradientStore: an ``[n, dim]`` matrix of sketched gradients (fp16 by default).

In memory (a numpy array) or on disk (a ``.npy`` file: readable with ``np.load(mmap_mode='r')``).
Disk stores are written with ``os.pwrite`` and scanned with ``readinto`` into one reused buffer,
so scanning a 2.6 GB store (ImageNet: 1.28M x 1024 x 2 bytes) keeps the process RSS at the size
of one block; only random row reads (``rows``) go through a read-only memory map.

Under DDP or job arrays each rank writes its rows to a :class:`ShardWriter` (an append-only rows
file + ids file + a JSON manifest written last, atomically); :func:`concat_shards` scatters all
shards into one store by id and checks every id in ``[0, n)`` arrives exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from rcs.errors import CoresetError
from rcs.utils.atomic import atomic_write_text

_FMT = np.lib.format


def _np(rows: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(rows, torch.Tensor):
        return rows.detach().float().cpu().numpy()
    return np.asarray(rows)


class GradientStore:
    """Rows of equal width; ``create`` a new one, ``open`` an existing ``.npy`` file."""

    def __init__(self, n: int, dim: int, dtype: np.dtype | str = np.float16,
                 path: str | Path | None = None, _array: np.ndarray | None = None,
                 _offset: int = 0):
        self.n, self.dim, self.dtype = int(n), int(dim), np.dtype(dtype)
        self.path = Path(path) if path is not None else None
        self._array = _array
        self._offset = _offset
        self._mmap: np.ndarray | None = None

    # construction ------------------------------------------------------------------------------
    @classmethod
    def create(cls, n: int, dim: int, path: str | Path | None = None,
               dtype: np.dtype | str = np.float16) -> GradientStore:
        """A zero-filled store; on disk when ``path`` is given (a sparse ``.npy`` file)."""
        if path is None:
            return cls(n, dim, dtype, _array=np.zeros((n, dim), dtype=dtype))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"descr": _FMT.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (int(n), int(dim))}
        with open(path, "wb") as f:
            _FMT.write_array_header_2_0(f, header)
            offset = f.tell()
            f.truncate(offset + int(n) * int(dim) * np.dtype(dtype).itemsize)
        return cls(n, dim, dtype, path=path, _offset=offset)

    @classmethod
    def open(cls, path: str | Path) -> GradientStore:
        """Open a store written by :meth:`create` (or any 2-D C-order ``.npy`` file)."""
        path = Path(path)
        with open(path, "rb") as f:
            version = _FMT.read_magic(f)
            read = _FMT.read_array_header_1_0 if version == (1, 0) else _FMT.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if len(shape) != 2 or fortran:
            raise CoresetError(f"'{path}' is not a 2-D C-order gradient store")
        return cls(shape[0], shape[1], dtype, path=path, _offset=offset)

    # properties --------------------------------------------------------------------------------
    @property
    def on_disk(self) -> bool:
        return self.path is not None

    @property
    def nbytes(self) -> int:
        return self.n * self.dim * self.dtype.itemsize

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        where = str(self.path) if self.on_disk else "memory"
        return f"GradientStore({self.n} x {self.dim}, {self.dtype}, {where})"

    # writing -----------------------------------------------------------------------------------
    def write(self, start: int, rows: np.ndarray | torch.Tensor) -> None:
        """Write rows ``[start, start + len(rows))`` (converted to the store's dtype)."""
        block = np.ascontiguousarray(_np(rows), dtype=self.dtype)
        if block.ndim != 2 or block.shape[1] != self.dim or start < 0 \
                or start + len(block) > self.n:
            raise ValueError(f"rows {tuple(block.shape)} at {start} do not fit {self!r}")
        if self._array is not None:
            self._array[start:start + len(block)] = block
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, block.tobytes(), self._offset + start * self.dim * self.dtype.itemsize)
        finally:
            os.close(fd)

    def write_ids(self, ids: np.ndarray, rows: np.ndarray | torch.Tensor) -> None:
        """Write ``rows[j]`` at row ``ids[j]`` (contiguous runs of ids are written at once)."""
        ids = np.asarray(ids, dtype=np.int64)
        block = _np(rows)
        order = np.argsort(ids, kind="stable")
        ids, block = ids[order], block[order]
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(ids)]):
            if hi > lo:
                self.write(int(ids[lo]), block[lo:hi])

    def flush(self) -> None:
        if self._mmap is not None:
            self._mmap = None

    # reading -----------------------------------------------------------------------------------
    def _map(self) -> np.ndarray:
        if self._array is not None:
            return self._array
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self._offset,
                                   shape=(self.n, self.dim))
        return self._mmap

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows at ``ids`` as float32 (random access; disk stores read runs with ``pread``, so
        no file pages are mapped into the process)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self._array is not None:
            return np.asarray(self._array[ids], dtype=np.float32)
        order = np.argsort(ids, kind="stable")
        srt = ids[order]
        out = np.empty((len(ids), self.dim), dtype=self.dtype)
        row_bytes = self.dim * self.dtype.itemsize
        breaks = np.flatnonzero(np.diff(srt) != 1) + 1
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(srt)]):
                if hi <= lo:
                    continue
                raw = os.pread(fd, int(hi - lo) * row_bytes,
                               self._offset + int(srt[lo]) * row_bytes)
                out[order[lo:hi]] = np.frombuffer(raw, self.dtype).reshape(hi - lo, self.dim)
        finally:
            os.close(fd)
        return out.astype(np.float32)

    def to_numpy(self, dtype: np.dtype | str = np.float32) -> np.ndarray:
        """The whole store in memory (small stores and tests)."""
        return np.asarray(self._map(), dtype=dtype)

    def iter_blocks(self, block_rows: int = 65536, raw: bool = False
                    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, tensor [rows, dim])`` over the store in order: float32, or the store's
        own dtype with ``raw=True`` (no conversion).

        The yielded tensor is a reused buffer: use it before asking for the next block.
        """
        block_rows = max(1, min(int(block_rows), self.n))
        out = None if raw else torch.empty(block_rows, self.dim, dtype=torch.float32)
        if self._array is not None:
            for s in range(0, self.n, block_rows):
                k = min(block_rows, self.n - s)
                src = torch.from_numpy(self._array[s:s + k])
                yield s, (src if out is None else out[:k].copy_(src))
            return
        buf = np.empty((block_rows, self.dim), dtype=self.dtype)
        row_bytes = self.dim * self.dtype.itemsize
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self._offset)
            for s in range(0, self.n, block_rows):
                k = min(block_rows, self.n - s)
                view = memoryview(buf[:k].reshape(-1).view(np.uint8))
                got = 0
                while got < k * row_bytes:
                    r = f.readinto(view[got:])
                    if not r:
                        raise CoresetError(f"gradient store '{self.path}' is truncated")
                    got += r
                src = torch.from_numpy(buf[:k])
                yield s, (src if out is None else out[:k].copy_(src))


class ShardWriter:
    """Append-only shard of (id, row) pairs for one rank: ``<dir>/<name>.rows|.ids|.json``."""

    def __init__(self, directory: str | Path, name: str, dim: int,
                 dtype: np.dtype | str = np.float16):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name, self.dim, self.dtype, self.count = name, int(dim), np.dtype(dtype), 0
        self._rows = open(self.dir / f"{name}.rows", "wb")  # noqa: SIM115
        self._ids = open(self.dir / f"{name}.ids", "wb")  # noqa: SIM115

    def append(self, ids: np.ndarray, rows: np.ndarray | torch.Tensor) -> None:
        block = np.ascontiguousarray(_np(rows), dtype=self.dtype)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if block.shape != (len(ids), self.dim):
            raise ValueError(f"shard rows {block.shape} do not match {len(ids)} ids x {self.dim}")
        self._rows.write(block.tobytes())
        self._ids.write(ids.tobytes())
        self.count += len(ids)

    def close(self) -> Path:
        """Flush and write the manifest (its presence marks the shard complete)."""
        for f in (self._rows, self._ids):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        man = self.dir / f"{self.name}.json"
        atomic_write_text(man, json.dumps({"count": self.count, "dim": self.dim,
                                           "dtype": self.dtype.str}))
        return man


def concat_shards(directory: str | Path, n: int, path: str | Path | None = None,
                  dtype: np.dtype | str = np.float16, block_rows: int = 65536) -> GradientStore:
    """Scatter every complete shard of ``directory`` into one store of ``n`` rows, by id."""
    directory = Path(directory)
    manifests = sorted(directory.glob("*.json"))
    if not manifests:
        raise CoresetError(f"no complete gradient shards in '{directory}'")
    dims = {json.loads(m.read_text())["dim"] for m in manifests}
    if len(dims) != 1:
        raise CoresetError(f"gradient shards in '{directory}' disagree on the width: {dims}")
    dim = dims.pop()
    store = GradientStore.create(n, dim, path, dtype)
    seen = np.zeros(n, dtype=np.int32)
    for man in manifests:
        info = json.loads(man.read_text())
        sdt = np.dtype(info["dtype"])
        ids = np.fromfile(man.with_suffix(".ids"), dtype=np.int64)
        if len(ids) != info["count"] or (len(ids) and (ids.min() < 0 or ids.max() >= n)):
            raise CoresetError(f"gradient shard '{man.stem}' is corrupt (ids do not match)")
        np.add.at(seen, ids, 1)
        rows = np.memmap(man.with_suffix(".rows"), dtype=sdt, mode="r", shape=(len(ids), dim))
        for s in range(0, len(ids), block_rows):
            store.write_ids(ids[s:s + block_rows], np.asarray(rows[s:s + block_rows]))
        del rows
    if not np.all(seen == 1):
        missing, dup = int((seen == 0).sum()), int((seen > 1).sum())
        raise CoresetError(f"gradient shards in '{directory}' cover the candidates badly "
                           f"({missing} missing, {dup} duplicated): did a rank fail?")
    return store


class RowSink:
    """Rows going to a store (created at the first write; width from the rows) or to a shard."""

    def __init__(self, n: int = 0, path: Path | None = None, dtype: np.dtype | str = np.float16,
                 shard: Path | None = None, name: str = ""):
        self.n, self.path, self.dtype, self.shard, self.name = n, path, dtype, shard, name
        self.target: GradientStore | ShardWriter | None = None

    def put(self, ids: np.ndarray, rows: np.ndarray | torch.Tensor) -> None:
        if self.target is None:
            width = rows.shape[1]
            self.target = (ShardWriter(self.shard, self.name, width, self.dtype) if self.shard
                           else GradientStore.create(self.n, width, self.path, self.dtype))
        if isinstance(self.target, ShardWriter):
            self.target.append(ids, rows)
        else:
            self.target.write_ids(ids, rows)

    def finish(self) -> GradientStore | None:
        """The store (single process), or None after closing the shard (it is concatenated)."""
        if isinstance(self.target, ShardWriter):
            self.target.close()
            return None
        return self.target
