"""Greedy RCS selection at ImageNet scale over a memory-mapped gradient store (no model).

Writes ``n`` synthetic sketched gradients (fp16, ``d`` dims; rows ~ N(0, 1)) to a ``.npy`` store
on disk, then runs the real greedy (:func:`rcs.selection.greedy.greedy_rounds` with the exact
streaming :class:`rcs.selection.retrieval.Retriever`) for ``budget = round(fraction·n)`` picks in
``rounds`` rounds. Without a model, ``q_U`` is moved each round by a cheap synthetic update that
has the shape of the real one (``q ← q − η·H·mean(g_picks)`` with a fixed random low-rank H).

Reports the store size, the write time, the time of each round, the selection time (greedy
only) and the peak RSS of the process (``ru_maxrss``, which covers the write phase as well).
Target (PUBLISHED_METHODS.md D5): 1.28M x 1024, k = 0.05, 20 rounds: <= 60 s and <= 6 GB on a
2-core CPU.

Each round streams the whole store (it is read with ``readinto`` into one reused buffer, so the
RSS stays near 0.4 GB; the file lives in the OS page cache, which is not process memory). As in
a real selection, the store is written just before the greedy, so it is read from the page
cache; with ``--reuse`` on a store evicted from the cache, the first round reads it from disk.

    python bench/select_scale.py                      # full size
    python bench/select_scale.py --n 200000           # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rcs.selection.base import budget as budget_of
from rcs.selection.greedy import greedy_rounds
from rcs.selection.retrieval import Retriever
from rcs.selection.store import GradientStore


def peak_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb * 1024 / 1e9


def write_store(path: Path, n: int, d: int, seed: int, block: int = 32768) -> GradientStore:
    store = GradientStore.create(n, d, path)
    rng = np.random.default_rng(seed)
    for s in range(0, n, block):
        k = min(block, n - s)
        store.write(s, rng.standard_normal((k, d), dtype=np.float32).astype(np.float16))
    return store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_281_167, help="candidates (default ImageNet-1K)")
    ap.add_argument("--d", type=int, default=1024, help="sketch dimension")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--store-dir", default="", help="folder for the store (default: a temp dir)")
    ap.add_argument("--index", default="flat", choices=("flat", "ivfpq"))
    ap.add_argument("--block-rows", type=int, default=65536)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--eta", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the store file afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a store kept by an earlier --keep run in --store-dir")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    root = Path(a.store_dir) if a.store_dir else Path(tempfile.mkdtemp(prefix="rcs-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"grads-{a.n}x{a.d}.npy"
    t0 = time.perf_counter()
    if a.reuse and path.is_file():
        store = GradientStore.open(path)
    else:
        store = write_store(path, a.n, a.d, a.seed)
    t_write = time.perf_counter() - t0
    size_gb = path.stat().st_size / 1e9
    print(f"store: {a.n} x {a.d} fp16 = {size_gb:.2f} GB at {path}, written in {t_write:.1f} s "
          f"(peak RSS so far {peak_gb():.2f} GB)", flush=True)

    rng = np.random.default_rng(a.seed + 1)
    low = rng.standard_normal((a.d, 16)).astype(np.float32) / np.sqrt(a.d)
    q0 = rng.standard_normal(a.d).astype(np.float32)
    state = {"q": q0.copy()}
    n_sel = budget_of(a.fraction, a.n)
    round_times: list[float] = []
    last = [time.perf_counter()]

    def update(r: int, picked: np.ndarray) -> np.ndarray:
        g = store.rows(np.sort(picked)).mean(0)
        state["q"] = state["q"] - a.eta * (low @ (low.T @ g)) * np.sqrt(a.d)
        now = time.perf_counter()
        round_times.append(now - last[0])
        last[0] = now
        return state["q"]

    t1 = time.perf_counter()
    retr = Retriever(store, a.index, block_rows=a.block_rows, seed=a.seed)
    t_index = time.perf_counter() - t1
    last[0] = time.perf_counter()
    res = greedy_rounds(a.n, n_sel, a.rounds, q0, retr.search, update)
    round_times.append(time.perf_counter() - last[0])
    seconds = time.perf_counter() - t1
    picked = res.units
    assert len(picked) == n_sel == len(np.unique(picked)), "budget not met exactly"
    print(f"greedy: engine={retr.engine} budget={n_sel} rounds={len(res.picks)} "
          f"(m={len(res.picks[0])}) index build {t_index:.1f} s")
    print("round seconds: " + " ".join(f"{t:.2f}" for t in round_times))
    print(f"first/last round gain: {res.gains[0]:.1f} / {res.gains[-1]:.1f}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True) if not a.store_dir else path.unlink()
    print(f"select_scale: seconds={seconds:.1f} peak_gb={peak_gb():.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "seconds": seconds, "peak_gb": peak_gb(), "store_gb": size_gb,
            "write_seconds": t_write, "index_seconds": t_index, "engine": retr.engine,
            "round_seconds": round_times, "budget": n_sel, "settings": vars(a)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
