"""rcs.utils.seed's generator helpers against direct numpy / hand-folded seeds, and
rcs.utils.device's unwrap and autocast."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from rcs.utils.device import amp_enabled, autocast, unwrap
from rcs.utils.seed import generator, hashed_seed, seed_int, torch_generator


@pytest.mark.parametrize("parts", [(0,), (3, 5), (7, 2, 1, 0x5C5), (2**40, 0, 9)])
def test_generator_and_seed_int_equal_direct_numpy(parts):
    want = np.random.default_rng(list(parts)).integers(0, 2**62, 8)
    np.testing.assert_array_equal(generator(*parts).integers(0, 2**62, 8), want)
    np.testing.assert_array_equal(generator(*[np.int64(p) for p in parts]).integers(0, 2**62, 8),
                                  want)
    state = np.random.SeedSequence(list(parts)).generate_state(1)[0]
    assert seed_int(*parts) == int(state) and isinstance(seed_int(*parts), int)
    assert seed_int(*parts) != seed_int(*parts, 1)


def test_hashed_seed_folds_by_hand():
    k = 0xC0DE
    h = (((1 + k) * 1_000_003 + 2 + k) * 1_000_003 + 3 + k) % 2**48
    assert hashed_seed(1, 2, 3, salt=k) == h
    s = 12345
    assert hashed_seed(4, salt=7, start=s) == (s * 1_000_003 + 4 + 7) % 2**48
    assert hashed_seed(salt=9, start=5) == 5
    big = [2**50, 2**47 + 3]  # wraps modulo 2^48
    h = 0
    for p in big:
        h = (h * 1_000_003 + p + 1) % 2**48
    assert hashed_seed(*big, salt=1) == h


def test_torch_generator_is_manual_seed_of_the_hash():
    g = torch_generator("cpu", 1, 2, salt=0x51ED)
    want = torch.Generator().manual_seed(hashed_seed(1, 2, salt=0x51ED))
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=want))
    assert not torch.equal(torch.rand(5, generator=torch_generator("cpu", 1, 2, salt=1)),
                           torch.rand(5, generator=torch_generator("cpu", 1, 2, salt=2)))


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def features(self, x: torch.Tensor, bn: str = "pgd") -> torch.Tensor:
        return self.lin(x)


def test_unwrap_looks_through_wrappers():
    m = _Model()
    wrapped = nn.Module()
    wrapped.module = m  # DDP / DataParallel
    compiled = nn.Module()
    compiled._orig_mod = wrapped  # torch.compile around DDP
    assert unwrap(m) is m and unwrap(wrapped) is m and unwrap(compiled) is m
    plain = nn.Linear(1, 1)
    assert unwrap(plain) is plain


def test_autocast_follows_train_amp():
    cpu = torch.device("cpu")
    assert not amp_enabled(cpu, "auto") and not amp_enabled(cpu, "off")
    assert amp_enabled(cpu, "bf16") and amp_enabled("cuda", "auto")
    assert not amp_enabled("cuda", "off")
    assert isinstance(autocast(cpu, "auto"), contextlib.nullcontext)
    with autocast(cpu, "bf16"):
        y = nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16
    with autocast(cpu, "off"):
        assert nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.float32
