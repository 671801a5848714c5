"""CaCo (Wang et al., 2022): cooperative positives and adversarial negatives, both learnable.

Like AdCo (``rcs.methods.adco``: single BN, momentum key encoder at ``train.memory.key_momentum``,
bank of K = ``train.memory.size`` entries started from encoded images, its own momentum SGD),
but the logits are the bank only and the positive is learnable too. Symmetrised over the two
views (queries of one view, keys of the other)::

    π_1(i) = argmax_j <k̂_2,i, b̂_j>,   π_2(i) = argmax_j <k̂_1,i, b̂_j>
    L = CE(<q̂_1, b̂>/t, π_1) + CE(<q̂_2, b̂>/t, π_2)                 (t = 0.08; a sum, as published)

After the optimiser step the bank moves along ``U_1 + U_2`` (``rcs.losses.caco_memory_direction``
at τ_m = ``train.memory.temperature``, 0.08): descent of the loss on each query's positive
entry (cooperative), ascent on every other entry (adversarial); published lr 3, momentum 0.9,
no weight decay. The published predictor head on the queries and the memory-lr warm-up are not
reproduced (README, "choices").
"""

from __future__ import annotations

import torch

from rcs.losses import caco_loss, caco_memory_direction, caco_positive_index
from rcs.methods.base import StepOutput, at_least_two, register_method, two_views
from rcs.methods.memory_method import MemoryMethod
from rcs.utils.distributed import gather_batch


@register_method("caco")
class CaCo(MemoryMethod):
    name = "caco"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        t = self.cfg.train
        t1, t2 = two_views(at_least_two(x), augment, generator, self.cfg)
        q1, q2 = (gather_batch(q) for q in forward([(t1, self.bn, "proj"),
                                                    (t2, self.bn, "proj")]))
        k1, k2 = (gather_batch(self.key_embeddings(v)) for v in (t1, t2))
        bank = self.memory.bank
        p1, p2 = caco_positive_index(k2, bank), caco_positive_index(k1, bank)
        loss = caco_loss(q1, bank, p1, t.temperature) + caco_loss(q2, bank, p2, t.temperature)
        self.pending = (q1.detach(), p1, q2.detach(), p2)
        distinct = torch.unique(torch.cat([p1, p2])).numel()
        return StepOutput(loss, {"positives_used": float(distinct)})

    def memory_direction(self, q1: torch.Tensor, p1: torch.Tensor, q2: torch.Tensor,
                         p2: torch.Tensor) -> torch.Tensor:
        tm, bank = self.cfg.train.memory.temperature, self.memory.bank
        return caco_memory_direction(q1, bank, p1, tm) + caco_memory_direction(q2, bank, p2, tm)
