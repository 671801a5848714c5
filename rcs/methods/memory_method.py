"""What AdCo and CaCo share as methods: a single-BN query network (the model), a momentum key
encoder, a learnable memory bank (``rcs.methods.memory_bank``) and the order of updates after
each optimiser step: first the bank (its own momentum SGD along the method's
:meth:`MemoryMethod.memory_direction`, from the step's detached queries), then the key encoder's
EMA step toward the model."""

from __future__ import annotations

import torch
from torch import nn

from rcs.errors import ConfigError
from rcs.methods.base import Method, RunContext, single_branch
from rcs.methods.byorl import ema_update
from rcs.methods.memory_bank import MemoryBank, initial_keys, key_encoder


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
        self.memory = MemoryBank(t.memory_size, int(model.out_dim)).to(ctx.device)
        self.memory.fill(initial_keys(self.keys, ctx.dataset, t.memory_size, self.bn, ctx.device,
                                      self.cfg.seed, t.batch_size, self.name))
        return {"memory": self.memory, "key_encoder": self.keys}

    @torch.no_grad()
    def key_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        self.keys.train()
        return self.keys(x, self.bn)

    def after_step(self, progress: float) -> None:
        t = self.cfg.train
        if self.pending is not None:
            self.memory.sgd_step(self.memory_direction(*self.pending), t.memory_lr,
                                 t.memory_momentum, t.memory_weight_decay)
            self.pending = None
        ema_update(self.keys, self.online, t.key_momentum)

    def memory_direction(self, *pending: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
