"""The gradient pass over the candidate pool, shared by RCS (its phase 1) and the gradient
baselines (gradnorm, craig).

Candidates are visited in one seeded order (:func:`candidate_order`: a permutation of the
selectable ids fixed by ``(run seed, selection.seed, epoch)``), in chunks of
``selection.candidate_batch`` (the other samples of a chunk are the negatives of each
per-sample loss). Per chunk (:func:`attacked_chunks`): the views are drawn and attacked with
``selection.train_attack_steps`` of PGD through the full model, and the attacked feature rows
are taken without grad; the caller turns them into per-sample gradients of the selection loss
w.r.t. the head's Linear layers (:func:`rcs.selection.per_sample.per_sample_grads`), reduced
to what it keeps: RCS a sketch (or nothing, for exact gains) plus the features, gradnorm a
norm, CRAIG a sketch (:func:`head_gradients`). With the same settings and context, gradnorm's
and CRAIG's gradients are the rows RCS's phase 1 computes.

Augmentation fallback (:func:`fallback_augment`): the context's augmentation (the trainer's,
``rcs select``'s), else the selector's own (library ``augment=``), else the run config's
``augment`` section, else ``Augment()``. RCS used to skip the run config and the baselines the
selector's own; both are kept, in that order. ``Augment()`` equals
``Augment(AugmentConfig())``, so RCS's default selections are unchanged.

Randomness: chunk ``c`` of repeat ``r`` draws its views from a CPU generator and its attack
start from a device generator, both :func:`rcs.utils.seed.torch_generator` of
``(run seed, selection.seed, epoch[, r], c, 1 | 2)`` (``r`` only for repeats after the first,
so repeat 0 is RCS's stream).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcs.errors import ConfigError
from rcs.selection.api import Net, attacked_features, frozen, net_from_model
from rcs.selection.base import SelectionContext
from rcs.selection.per_sample import HeadFn, Objective, per_sample_grads
from rcs.selection.settings import SelectorSettings
from rcs.selection.sketch import Sketch
from rcs.utils.device import unwrap
from rcs.utils.seed import generator, torch_generator

ORDER_SALT = 0x5C5
"""Names the candidate-order stream."""
CHUNK_SALT = 0xC0DE
"""Names the per-chunk view / attack-start streams."""


def fallback_augment(ctx: SelectionContext, augment: Any = None) -> Callable:
    """The augmentation of the gradient pass (see the module docstring)."""
    if ctx.augment is not None:
        return ctx.augment
    if augment is not None:
        return augment
    from rcs.data import Augment
    return Augment(ctx.cfg.augment if ctx.cfg is not None else None)


def selection_stream(ctx: SelectionContext, s: SelectorSettings) -> tuple[int, int, int]:
    """The seed parts every random stream of one selection starts with: (run seed,
    ``selection.seed``, epoch); each stream appends its own salt (and chunk, repeat)."""
    return int(ctx.seed), int(s.selection.seed), int(ctx.epoch)


def _stream(ctx: SelectionContext, s: SelectorSettings, repeat: int) -> tuple[int, ...]:
    return selection_stream(ctx, s) + ((repeat,) if repeat else ())


def candidate_order(ctx: SelectionContext, s: SelectorSettings, pool: float = 1.0,
                    repeat: int = 0) -> np.ndarray:
    """The candidate pool (never a validation id) in a seeded random order: the first
    ``max(budget, ceil(pool * n))`` of a permutation fixed by (seed, selection seed, epoch[,
    repeat])."""
    cand, n_sel = ctx.selectable()
    rng = generator(*selection_stream(ctx, s), ORDER_SALT, *((repeat,) if repeat else ()))
    order = cand[rng.permutation(len(cand))]
    return order[:max(n_sel, math.ceil(pool * len(order)))]


def make_sketch(ctx: SelectionContext, s: SelectorSettings, in_dim: int) -> Sketch:
    """The seeded gradient sketch to ``selection.sketch_dim`` dims (``sketch_kind``: auto on
    CUDA, countsketch on CPU unless set)."""
    kind = s.sketch_kind or ("auto" if torch.device(ctx.device).type == "cuda" else "countsketch")
    seed = int(ctx.seed) * 7919 + int(s.selection.seed)
    return Sketch(in_dim, s.selection.sketch_dim, seed, kind)


def attacked_chunks(ctx: SelectionContext, net: Net, obj: Objective, head: HeadFn,
                    order: np.ndarray, s: SelectorSettings, augment: Callable,
                    chunks: Iterable[int] | None = None, repeat: int = 0,
                    desc: str = "rcs gradients") -> Iterator[tuple[int, Tensor | None, Tensor]]:
    """``(c, labels, feats [b, V, D])`` for chunks ``c`` (default all) of ``order``: the
    chunk's views attacked and their features taken without grad
    (:func:`rcs.selection.api.attacked_features`). Call inside ``frozen(net.modules)``."""
    from rcs.utils.progress import progress

    dev, bsz = torch.device(ctx.device), s.selection.candidate_batch
    stream = _stream(ctx, s, repeat)
    if chunks is None:
        chunks = range(math.ceil(len(order) / bsz))
    for c in progress(list(chunks), desc=desc, unit="batch"):
        x, y = ctx.dataset.get_batch(order[c * bsz:(c + 1) * bsz])
        x, y = x.to(dev), (None if y is None else y.to(dev))
        gens = (torch_generator("cpu", *stream, c, 1, salt=CHUNK_SALT),
                torch_generator(dev, *stream, c, 2, salt=CHUNK_SALT))
        feats = attacked_features(net, obj, head, x, y, augment, s.eps,
                                  s.selection.train_attack_steps, gens, s.amp)
        yield c, y, feats


def objective_and_net(model: Any, s: SelectorSettings) -> tuple[Objective, Net]:
    """The selection objective of ``s.method`` and the Net over ``model`` (wrappers looked
    through), built as RCS builds them."""
    net = net_from_model(unwrap(model), s.objective_kind)
    return s.objective(net.bn), net


def head_gradients(ctx: SelectionContext, s: SelectorSettings,
                   reduce: Callable[[Tensor], Tensor], repeat: int = 0,
                   desc: str = "gradients") -> Iterator[tuple[np.ndarray, Tensor]]:
    """RCS's phase 1 over all selectable candidates, for the baselines: yields
    ``(positions into ctx.selectable()[0], reduce(grads [b, P]))`` chunk by chunk, where
    ``grads`` are the per-sample gradients w.r.t. the head's Linear layers (``selection.scope``)
    and ``reduce`` turns them into what the caller keeps (a norm, a sketch), so at most
    ``grad_chunk x P`` floats are alive. ``repeat`` > 0 draws other views and attack starts
    (and another order). Cost: ``(attack_steps + 2)`` forward and ``attack_steps`` backward
    passes per view, plus ``O(b·P)`` per chunk for the head gradients."""
    if ctx.model is None:
        raise ConfigError("this selector needs the model being trained (ctx.model)")
    dev = torch.device(ctx.device)
    obj, net = objective_and_net(ctx.model, s)
    head = HeadFn(net.head, s.selection.scope, device=dev, dtype=torch.float32)
    cand = ctx.selectable()[0]
    order = candidate_order(ctx, s, 1.0, repeat)
    pos, bsz = np.searchsorted(cand, order), s.selection.candidate_batch
    with frozen(net.modules):
        for c, y, feats in attacked_chunks(ctx, net, obj, head, order, s,
                                           fallback_augment(ctx, s.augment), None, repeat,
                                           desc):
            yield pos[c * bsz:(c + 1) * bsz], per_sample_grads(obj, head, feats, y,
                                                                s.grad_chunk, reduce)
