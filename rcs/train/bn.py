"""Re-estimating BatchNorm running statistics on the full data after coreset epochs.

Training on a coreset updates every BN layer's running mean and variance from coreset batches
only. The running statistics are what eval-mode forwards use: the PGD attacks of the next
training steps, every selection, and the frozen encoder in fine-tuning. A coreset chosen by
gradient alignment is not a random sample, so its statistics differ from the data's, and an
encoder whose weights barely moved can still represent held-out images differently (measured
in docs/results/coreset_quality: the whole rise in held-out RD of an RCS-trained encoder over
a random-coreset one vanished when the warm-up's BN statistics were put back).

:func:`recalibrate_bn` re-estimates them as a cumulative average over a few random batches
run through the method's own training forward (the same views, attacks and BN branches as a
training step; no backward, no optimizer step), as ``torch.optim.swa_utils.update_bn`` does
for plain forwards. The old statistics are not zeroed first: each layer's first update replaces
them (BN's ``momentum=None`` average with its batch counter at 0), so the attack of the first
batch, which runs in eval mode before any update, still sees sensible statistics. Branches the
forward never uses keep their statistics; batch counters are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def recalibrate_bn(model: nn.Module, forwards: Iterable[Callable[[], object]],
                   average_across_ranks: bool = False) -> int:
    """Re-estimate ``model``'s BN running statistics as the average over the train-mode
    forwards of ``forwards`` (each a callable running one batch); returns the number of BN
    layers re-estimated (layers no forward reached are unchanged). With
    ``average_across_ranks``, the estimates are averaged over the process group."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.num_batches_tracked.zero_()  # the first update replaces, the next ones average
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        for run in forwards:
            run()
    finally:
        model.train(was_training)
        updated = [int(m.num_batches_tracked) > 0 for m in bns]  # else a branch never used
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
    if average_across_ranks:
        for m in (m for m, up in zip(bns, updated) if up):
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf.div_(torch.distributed.get_world_size())
    return sum(updated)
