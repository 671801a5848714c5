"""RoCL (Kim et al., NeurIPS 2020): robust contrastive learning with an instance-wise attack
(PUBLISHED_METHODS.md A5). Single BN (``model.bn_names: [normal]``), projector 512-2048-128
(``rocl``).

Per image, two augmentations ``t1``, ``t2``; the instance-wise attack starts from ``t1`` +
U(-eps, eps) clamped into [0, 1] and maximises the 2-view RoCL NT-Xent of ``[x_adv; t2]`` in
eval mode (published: eps 0.0314, step 0.007, 7 steps; ``train.attack``)::

    L = NTX_3([t1; t2; x_adv]) + (1 / lambda) NTX_2([x_adv; t2])           (lambda = 256)

with the RoCL NT-Xent of ``rcs.losses.rocl`` (key side detached, two positives per anchor in
the 3-view term). The three views go through the network in one train-mode forward (one set of
batch statistics, as one concatenated batch); the main term uses the negatives of the whole
global batch under DDP (all-gathered, as published), the regulariser the local batch only.
The regulariser reuses the embeddings of that forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rcs.attacks import attack_mode, pgd
from rcs.config.checks import check
from rcs.losses import rocl_nt_xent
from rcs.methods.base import Method, StepOutput, register_method, single_branch
from rcs.utils.distributed import gather_batch


@dataclass
class RoclSettings:
    """``train.rocl``: RoCL's loss weights (methods rocl and arocl)."""

    lam: float = 256.0
    """λ: the adversarial pair term NTX(adv, t2) is weighted 1 / λ."""

    OLD_KEYS: ClassVar[dict[str, str]] = {"rocl_lambda": "lam"}

    def validate(self) -> None:
        check(self.lam > 0, "train.rocl.lam must be > 0")


@register_method("rocl", settings=RoclSettings)
class RoCL(Method):
    name = "rocl"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn = single_branch(cfg, self.name)

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        t, a = self.cfg.train, self.cfg.train.attack
        t1, t2 = augment(x, generator=generator), augment(x, generator=generator)
        if t.channels_last and t1.is_cuda:
            t1, t2 = (v.contiguous(memory_format=torch.channels_last) for v in (t1, t2))
        with attack_mode(model), torch.no_grad():
            z_t2 = model(t2, self.bn)

        def objective(xa: torch.Tensor) -> torch.Tensor:
            return rocl_nt_xent([model(xa, self.bn), z_t2], t.temperature)

        x_adv = pgd(objective, t1, eps=a.eps, alpha=a.alpha, steps=a.steps,
                    random_start=a.random_start, generator=generator, model=model,
                    start_clamp=True)
        outs = forward([(torch.cat([t1, t2, x_adv]), self.bn, "proj")])
        main, reg = self.terms(outs)
        loss = main + reg / t.rocl.lam
        return StepOutput(loss, {"ntx3": float(main.detach()), "adv_pair": float(reg.detach())})

    def terms(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(NTX_3 over the global batch, NTX_2(adv, t2) over the local batch)``."""
        z1, z2, za = outputs[0].chunk(3)
        main = rocl_nt_xent([gather_batch(v) for v in (z1, z2, za)], self.cfg.train.temperature)
        return main, rocl_nt_xent([za, z2], self.cfg.train.temperature)

    def embedding_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        main, reg = self.terms(outputs)
        return main + reg / self.cfg.train.rocl.lam
