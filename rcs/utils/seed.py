"""Seeding and capture/restore of every RNG state (python, numpy, torch CPU/CUDA)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors/plain types (loadable with ``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = list(state["python"])
    gauss = py.pop()
    random.setstate((state["python_version"], tuple(int(x) for x in py), gauss or None))
    np.random.set_state((
        "MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
        state["numpy_has_gauss"], state["numpy_gauss"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator(*parts: int) -> np.random.Generator:
    """``numpy.random.default_rng([*parts])``: a numpy generator seeded by a list of
    non-negative ints (a seed, an epoch, a salt naming the stream, ...)."""
    return np.random.default_rng([int(p) for p in parts])


def seed_int(*parts: int) -> int:
    """One 32-bit seed from a list of non-negative ints:
    ``SeedSequence([*parts]).generate_state(1)[0]`` (for ``torch.Generator.manual_seed``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


_MASK48 = 0xFFFFFFFFFFFF


def hashed_seed(*parts: int, salt: int, start: int = 0) -> int:
    """A 48-bit seed folded from ``parts``: ``h = start; h = (h·1000003 + p + salt) mod 2^48``
    per part. ``salt`` names the stream (each caller has its own), ``start`` is the initial
    value (the sketch starts from its seed)."""
    h = int(start)
    for p in parts:
        h = (h * 1_000_003 + int(p) + int(salt)) & _MASK48
    return h


def torch_generator(device: Any, *parts: int, salt: int, start: int = 0) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`hashed_seed` of ``parts``."""
    gen = torch.Generator(device=torch.device(device))
    return gen.manual_seed(hashed_seed(*parts, salt=salt, start=start))
