"""Top-m inner-product retrieval over a GradientStore, excluding already chosen ids.

``Retriever(store, index)`` answers ``search(q, m, excluded) -> (ids, scores)``: the ``m`` rows
with the largest ``<row, q>`` among rows not marked in ``excluded``, sorted by score (ties by
id). Three engines:

- ``flat`` on an in-memory store: FAISS ``IndexFlatIP`` (exact) on a float32 copy, exclusion with
  an ``IDSelectorBitmap`` of the allowed ids.
- ``flat`` on a disk store (or an in-memory one whose float32 copy would exceed ``max_ram_gb``):
  an exact streaming scan: fp16 blocks -> float32 in cache-sized pieces -> matvec with ``q``, a
  running top-m; memory stays at one block (FAISS would copy the whole store to float32 RAM).
- ``ivfpq``: FAISS ``IndexIVFPQ`` (inner product) trained on a seeded sample and filled block by
  block (about ``dim/16`` bytes per row): approximate. It proposes ``refine·m`` ids, which are
  re-ranked by their exact scores (random reads of the store); when it returns fewer than ``m``
  allowed ids the rest is filled by the exact scan. Returned scores are always exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rcs.selection.store import GradientStore
from rcs.utils.optional import require
from rcs.utils.seed import generator


def exact_top_m(matrix: np.ndarray, q: np.ndarray, m: int,
                excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference: top-``m`` of ``matrix @ q`` over non-excluded rows (numpy)."""
    scores = np.asarray(matrix, dtype=np.float64) @ np.asarray(q, dtype=np.float64)
    ids = np.arange(len(scores)) if excluded is None else np.flatnonzero(~excluded)
    order = np.lexsort((ids, -scores[ids]))[:m]
    return ids[order].astype(np.int64), scores[ids[order]]


def _sort(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))
    return ids[order].astype(np.int64), scores[order].astype(np.float32)


class Retriever:
    """Repeated top-m searches over one fixed store with a growing exclusion set."""

    def __init__(self, store: GradientStore, index: str = "flat", block_rows: int = 65536,
                 seed: int = 0, nprobe: int | None = None, refine: int = 4,
                 max_ram_gb: float = 2.0):
        if index not in ("flat", "ivfpq"):
            raise ValueError(f"index {index!r} is not one of flat, ivfpq")
        self.store, self.block_rows, self.seed, self.refine = store, block_rows, seed, refine
        big = store.n * store.dim * 4 > max_ram_gb * 1e9  # a float32 FAISS copy would not fit
        self.engine = "stream" if index == "flat" and (store.on_disk or big) else index
        self._index = None
        if self.engine == "flat":
            faiss = require("faiss", "the FAISS gradient index (selection.gradients=sketch)")

            self._index = faiss.IndexFlatIP(store.dim)
            self._index.add(store.to_numpy(np.float32))
        elif self.engine == "ivfpq":
            self._build_ivfpq(nprobe)

    # --------------------------------------------------------------------------------------------
    def _build_ivfpq(self, nprobe: int | None) -> None:
        faiss = require("faiss", "the FAISS gradient index (selection.gradients=sketch)")
        n, d = self.store.n, self.store.dim
        nlist = int(max(1, min(round(math.sqrt(n)), n // 39)))
        m_sub = max(k for k in range(1, d + 1) if d % k == 0 and k <= max(1, d // 16))
        nbits = int(max(1, min(8, math.floor(math.log2(max(2, n // 39))))))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quant, d, nlist, m_sub, nbits, faiss.METRIC_INNER_PRODUCT)
        n_train = min(n, max(nlist, 2 ** nbits) * 64)
        rng = generator(self.seed, 0x1F)
        sample = np.sort(rng.choice(n, size=n_train, replace=False))
        index.train(self.store.rows(sample))
        for _, block in self.store.iter_blocks(self.block_rows):
            for s in range(0, len(block), 4096):  # FAISS's add needs ~30 KB per row: keep small
                index.add(block[s:s + 4096].numpy())
        self._quant = quant  # keep the quantizer alive
        self._nprobe = int(nprobe or max(1, nlist // 4))
        self._index = index

    def _allowed_selector(self, excluded: np.ndarray) -> tuple[object, np.ndarray]:
        faiss = require("faiss", "the FAISS gradient index (selection.gradients=sketch)")
        bitmap = np.packbits(~excluded, bitorder="little")
        return faiss.IDSelectorBitmap(len(excluded), faiss.swig_ptr(bitmap)), bitmap

    def _scan(self, q: torch.Tensor, m: int, excluded: np.ndarray) -> np.ndarray:
        """Exact streaming top-m: raw blocks are converted to float32 in cache-sized pieces."""
        best_s = torch.empty(0)
        best_i = torch.empty(0, dtype=torch.int64)
        ex = torch.from_numpy(excluded)
        piece = 4096
        f32 = torch.empty(min(piece, self.store.n), self.store.dim)
        scores = torch.empty(min(self.block_rows, self.store.n))
        for start, block in self.store.iter_blocks(self.block_rows, raw=True):
            k = len(block)
            for p in range(0, k, piece):
                b = block[p:p + piece]
                torch.mv(f32[:len(b)].copy_(b), q, out=scores[p:p + len(b)])
            s = scores[:k].masked_fill_(ex[start:start + k], -math.inf)
            v, i = torch.topk(s, min(m, k), sorted=False)
            cat_s, cat_i = torch.cat([best_s, v]), torch.cat([best_i, i + start])
            keep = torch.topk(cat_s, min(m, len(cat_s)), sorted=False).indices
            best_s, best_i = cat_s[keep], cat_i[keep]
        ids = best_i[torch.isfinite(best_s)].numpy()
        return ids[~excluded[ids]]

    # --------------------------------------------------------------------------------------------
    def search(self, q: np.ndarray | torch.Tensor, m: int,
               excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``m`` allowed ids by ``<row, q>`` (fewer when fewer are allowed) and their scores."""
        n = self.store.n
        excluded = np.zeros(n, dtype=bool) if excluded is None else np.asarray(excluded, bool)
        qt = torch.as_tensor(np.asarray(q, dtype=np.float32).reshape(-1))
        m = int(min(m, n - int(excluded.sum())))
        if m <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self.engine == "stream":
            ids = self._scan(qt, m, excluded)
        else:
            faiss = require("faiss", "the FAISS gradient index (selection.gradients=sketch)")
            sel, _bitmap = self._allowed_selector(excluded)
            params = (faiss.SearchParameters(sel=sel) if self.engine == "flat" else
                      faiss.SearchParametersIVF(sel=sel, nprobe=self._nprobe))
            k = m if self.engine == "flat" else min(n - int(excluded.sum()), self.refine * m)
            _, found = self._index.search(qt.numpy()[None], k, params=params)
            ids = found[0][found[0] >= 0]
            ids = ids[~excluded[ids]]
            if self.engine == "ivfpq" and len(ids) > m:  # re-rank the candidates exactly
                exact = self.store.rows(np.sort(ids)) @ qt.numpy()
                ids = _sort(np.sort(ids), exact.astype(np.float64))[0][:m]
            if len(ids) < m:  # IVF probed too few lists: fill exactly
                ex2 = excluded.copy()
                ex2[ids] = True
                ids = np.concatenate([ids, self._scan(qt, m - len(ids), ex2)])
        ids = np.asarray(ids, dtype=np.int64)
        scores = self.store.rows(np.sort(ids)) @ qt.numpy() if len(ids) else np.empty(0)
        return _sort(np.sort(ids), np.asarray(scores, dtype=np.float64))
