"""What AdCo and CaCo share as methods: a single-BN query network (the model), a momentum key
encoder, a learnable memory bank (``rcs.methods.memory_bank``) and the order of updates after
each optimiser step: first the bank (its own momentum SGD along the method's
:meth:`MemoryMethod.memory_direction`, from the step's detached queries), then the key encoder's
EMA step toward the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rcs.config.checks import check
from rcs.errors import ConfigError
from rcs.methods.base import Method, RunContext, register_settings, single_branch
from rcs.methods.byorl import ema_update
from rcs.methods.memory_bank import MemoryBank, initial_keys, key_encoder


@dataclass
class MemorySettings:
    """``train.memory``: the learnable memory bank and key encoder of AdCo and CaCo."""

    size: int = 65536
    """K, the number of learnable memory entries (published 65536 on ImageNet; at most the
    dataset size here: the bank starts from the key encoder's embeddings)."""
    lr: float = 3.0
    """Learning rate of the memory bank's own SGD (published 3)."""
    temperature: float = 0.02
    """Temperature of the memory update (AdCo 0.02, CaCo 0.08)."""
    momentum: float = 0.9
    """Momentum of the memory bank's SGD."""
    weight_decay: float = 1e-4
    """Weight decay of the memory bank (AdCo 1e-4, CaCo 0)."""
    key_momentum: float = 0.999
    """EMA rate of the momentum key encoder (AdCo 0.999, CaCo 0.99)."""

    OLD_KEYS: ClassVar[dict[str, str]] = {
        "memory_size": "size", "memory_lr": "lr", "memory_temperature": "temperature",
        "memory_momentum": "momentum", "memory_weight_decay": "weight_decay",
        "key_momentum": "key_momentum"}

    def validate(self) -> None:
        check(self.size >= 1, "train.memory.size must be >= 1")
        check(self.lr >= 0 and self.momentum >= 0 and self.weight_decay >= 0,
              "train.memory.lr, train.memory.momentum and train.memory.weight_decay must be >= 0")
        check(self.temperature > 0, "train.memory.temperature must be > 0")
        check(0.0 <= self.key_momentum <= 1.0, "train.memory.key_momentum must be in [0, 1]")


register_settings("memory", MemorySettings)


class MemoryMethod(Method):
    """Shared setup of AdCo and CaCo: the bank, the key encoder, the pending update."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn = single_branch(cfg, self.name)
        self.online: nn.Module | None = None
        self.keys: nn.Module | None = None
        self.memory: MemoryBank | None = None
        self.pending: tuple[torch.Tensor, ...] | None = None

    def setup(self, ctx: RunContext) -> dict[str, nn.Module]:
        model, t = ctx.model, self.cfg.train
        if model.head is None:
            raise ConfigError(f"train.method={self.name} needs a projection head (model.head)")
        self.online = model
        self.keys = key_encoder(model)
        self.memory = MemoryBank(t.memory.size, int(model.out_dim)).to(ctx.device)
        self.memory.fill(initial_keys(self.keys, ctx.dataset, t.memory.size, self.bn, ctx.device,
                                      self.cfg.seed, t.batch_size, self.name))
        return {"memory": self.memory, "key_encoder": self.keys}

    @torch.no_grad()
    def key_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        self.keys.train()
        return self.keys(x, self.bn)

    def after_step(self, progress: float) -> None:
        t = self.cfg.train
        if self.pending is not None:
            self.memory.sgd_step(self.memory_direction(*self.pending), t.memory.lr,
                                 t.memory.momentum, t.memory.weight_decay)
            self.pending = None
        ema_update(self.keys, self.online, t.memory.key_momentum)

    def memory_direction(self, *pending: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
