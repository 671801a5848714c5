"""AdCo (Hu et al., CVPR 2021): adversarial contrast with a learnable memory of negatives.

Query network = the model (single BN, ``model.bn_names: [normal]``); key network = a momentum
(EMA) copy of it, rate ``train.memory.key_momentum`` (0.999), fed the other view without gradient in
train mode (MoCo's shuffle-BN is not reproduced). Per step, with views ``t1`` (queries) and
``t2`` (keys) and the bank of K = ``train.memory.size`` learnable negatives
(:class:`rcs.methods.memory_bank.MemoryBank`)::

    L = CE( [<q̂_i, k̂_l>]_l ++ [<q̂_i, b̂_j>]_j / t,  i )          (rcs.losses.adco_loss; t =
                                                                  train.temperature, 0.12)

over the global batch (every key of the batch is a negative, the own key the positive). After
the optimiser step the bank ascends the same loss at τ_m = ``train.memory.temperature`` (0.02)
by its own momentum SGD (lr ``train.memory.lr`` = 3, momentum ``train.memory.momentum`` = 0.9,
weight decay ``train.memory.weight_decay`` = 1e-4) from the step's detached queries
(closed-form gradient, ``rcs.losses.adco_memory_grad``), then the key encoder takes its EMA
step. The bank starts from the key encoder's embeddings of K clean training images (the
published ``ad_init``); bank, velocity and key encoder are extra modules kept in checkpoints.
"""

from __future__ import annotations

import torch

from rcs.losses import adco_loss, adco_memory_grad
from rcs.methods.base import StepOutput, at_least_two, register_method, two_views
from rcs.methods.memory_method import MemoryMethod
from rcs.utils.distributed import gather_batch


@register_method("adco")
class AdCo(MemoryMethod):
    name = "adco"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        t1, t2 = two_views(at_least_two(x), augment, generator, self.cfg)
        (q,) = forward([(t1, self.bn, "proj")])
        q, k = gather_batch(q), gather_batch(self.key_embeddings(t2))
        loss = adco_loss(q, k, self.memory.bank, self.cfg.train.temperature)
        self.pending = (q.detach(), k.detach())
        return StepOutput(loss)

    def memory_direction(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return adco_memory_grad(q, k, self.memory.bank, self.cfg.train.memory.temperature)
