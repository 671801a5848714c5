"""Method-owned modules of the memory-bank methods (AdCo, CaCo): the learnable bank with its
SGD velocity, and the momentum key encoder.

Both are extra modules (``Method.setup``), so the trainer saves them in the checkpoint
(``extras``) and a resume restores the bank, its velocity (the memory optimiser's whole state)
and the key encoder exactly. Neither has parameters the model's optimiser trains: the bank is
updated by the method after every optimiser step (:meth:`MemoryBank.sgd_step`), the key
encoder by an EMA of the model (``rcs.methods.byorl.ema_update``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rcs.data import to_float
from rcs.errors import ConfigError
from rcs.losses import memory_sgd_step

__all__ = ["MemoryBank", "key_encoder", "initial_keys"]


class MemoryBank(nn.Module):
    """``bank`` [K, d] (raw vectors; used through their directions) and ``velocity`` [K, d]."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(size, dim))
        self.register_buffer("velocity", torch.zeros(size, dim))

    @torch.no_grad()
    def fill(self, z: torch.Tensor) -> None:
        """Start from the directions of ``z`` [K, d]; the velocity starts at zero."""
        if z.shape != self.bank.shape:
            raise ValueError(f"memory bank of shape {tuple(self.bank.shape)} cannot start from "
                             f"{tuple(z.shape)}")
        self.bank.copy_(F.normalize(z.float(), dim=1))
        self.velocity.zero_()

    @torch.no_grad()
    def sgd_step(self, direction: torch.Tensor, lr: float, momentum: float,
                 weight_decay: float) -> None:
        """``v <- m v - U + λ b``, ``b <- b - η v`` (``rcs.losses.memory_sgd_step``)."""
        memory_sgd_step(self.bank, self.velocity, direction, lr, momentum, weight_decay)


def key_encoder(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (the momentum key encoder; updated by EMA only)."""
    return copy.deepcopy(model).requires_grad_(False)


@torch.no_grad()
def initial_keys(encoder: nn.Module, dataset, size: int, bn: str, device: torch.device,
                 seed: int, batch_size: int = 256, method: str = "") -> torch.Tensor:
    """Key embeddings ([size, d]) of ``size`` clean training images (a seeded draw without
    replacement), in eval mode: the published memory banks start from encoded images."""
    n = len(dataset)
    if size > n:
        raise ConfigError(f"train.memory.size={size} is larger than the {n} training images "
                          f"{method} can initialise its memory bank from; set "
                          f"train.memory.size <= {n} (e.g. --set train.memory.size={n})")
    idx = np.random.default_rng(seed).permutation(n)[:size]
    was = encoder.training
    encoder.eval()
    try:
        out = []
        for start in range(0, size, batch_size):
            x, _ = dataset.get_batch(idx[start:start + batch_size])
            out.append(encoder(to_float(x.to(device)), bn).float())
        return torch.cat(out)
    finally:
        encoder.train(was)
