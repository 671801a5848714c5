"""Pieces the baseline selectors share: settings, the candidate set, encoder features and
per-sample head gradients of the pretraining loss (reusing rcs.selection's RCS machinery).

Every baseline selects from ``candidates \\ val`` (never a validation index), returns exactly
``min(ctx.budget, |candidates \\ val|)`` indices, and never modifies ``ctx.model`` (all model work
runs inside :func:`rcs.selection.api.frozen`, which restores train/eval flags, ``requires_grad``
and BN routing). Randomness comes from generators seeded by ``(ctx.seed, selection.seed,
ctx.epoch)``, so the same inputs give the same coreset.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcs.errors import ConfigError, CoresetError
from rcs.methods.registry import selection_loss_of
from rcs.selection.api import Net, attacked_features, frozen, make_objective, net_from_model
from rcs.selection.base import SelectionContext
from rcs.selection.per_sample import HeadFn, Objective, per_sample_grads

log = logging.getLogger("rcs.baselines")


@dataclass
class Settings:
    """What the baselines read from a run config (any field may be overridden by keyword).

    ``batch``: images per chunk (``selection.candidate_batch``, 0 = ``train.batch_size``; the
    other samples of a chunk are the negatives of each per-sample loss); ``attack_steps``: PGD
    steps on the candidates' views (``selection.train_attack_steps``, as RCS); ``sketch_dim``:
    gradient sketch size (``selection.sketch_dim``); ``branch``: BN branch for encoder features
    (``finetune.branch``, default ``'pgd'``: the branch that is exported and fine-tuned);
    ``index``: FAISS index (``selection.index``: flat = exact, ivfpq = approximate IVF).
    """

    batch: int = 512
    attack_steps: int = 1
    sketch_dim: int = 1024
    seed: int = 0
    index: str = "flat"
    branch: str = "pgd"
    method: str = "acl"
    temperature: float = 0.5
    eps: float = 8 / 255
    amp: str = "auto"
    grad_chunk: int = 64
    air: tuple[float, float, str] = (0.5, 0.5, "faithful")

    @classmethod
    def from_cfg(cls, cfg: Any = None, **overrides: Any) -> Settings:
        s = cls()
        if cfg is not None:
            sc, tr = cfg.selection, cfg.train
            s = cls(batch=sc.candidate_batch or tr.batch_size,  # 0 = the training batch
                    attack_steps=sc.train_attack_steps,
                    sketch_dim=sc.sketch_dim, seed=sc.seed, index=sc.index,
                    branch=cfg.finetune.branch, method=tr.method, temperature=tr.temperature,
                    eps=tr.attack.eps, amp=tr.amp,
                    air=(tr.air.lambda1, tr.air.lambda2, tr.air.variant))
        for k, v in overrides.items():
            if not hasattr(s, k):
                raise ConfigError(f"unknown baseline setting {k!r}; valid: "
                                  f"{', '.join(s.__dataclass_fields__)}")
            if v is not None:
                setattr(s, k, v)
        if s.batch < 2 or s.attack_steps < 0 or s.sketch_dim < 1:
            raise ConfigError("baseline settings need batch >= 2, attack_steps >= 0, "
                              "sketch_dim >= 1")
        return s


def candidates(ctx: SelectionContext) -> tuple[np.ndarray, int]:
    """Sorted candidate ids without any validation id, and the number to select."""
    cand, k = ctx.selectable()
    if len(cand) == 0:
        raise CoresetError("no candidates left to select from (all are validation images)")
    return cand, k


def rng_for(ctx: SelectionContext, s: Settings, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(ctx.seed), int(s.seed), int(ctx.epoch), salt])


def torch_gen(device: Any, *salt: int) -> torch.Generator:
    h = 0
    for v in salt:
        h = (h * 1_000_003 + int(v) + 0xBA5E) & 0xFFFFFFFFFFFF
    return torch.Generator(device=torch.device(device)).manual_seed(h)


class Timer:
    """``with timer('phase'):`` accumulates wall seconds per phase into ``timer.seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t

    def done(self, name: str, n: int, k: int) -> dict[str, float]:
        self.seconds["total"] = time.perf_counter() - self._t0
        log.info("%s: %d of %d candidates in %.2fs (%s)", name, k, n, self.seconds["total"],
                 ", ".join(f"{p} {v:.2f}s" for p, v in self.seconds.items() if p != "total"))
        return dict(self.seconds)


def trace(values: Any, cap: int = 1024) -> list[float]:
    """At most ``cap`` evenly spaced entries of a per-pick sequence (for JSON metadata)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) > cap:
        v = v[np.linspace(0, len(v) - 1, cap).round().astype(np.int64)]
    return [float(x) for x in v]


def unwrap(model: Any) -> Any:
    """The RobustModel inside DDP / DataParallel / torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        while not hasattr(model, "features") and hasattr(model, attr):
            model = getattr(model, attr)
    return model


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and amp in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encoder_features(ctx: SelectionContext, ids: np.ndarray, s: Settings) -> Tensor:
    """Encoder features ``[n, D]`` (float32, on ``ctx.device``) of the *un-augmented* images
    ``ids`` on BN branch ``s.branch``, in eval mode without gradients. Cost: one forward pass
    per image, no attack."""
    from rcs.data import to_float

    if ctx.model is None:
        raise ConfigError("this selector needs the model being trained (ctx.model)")
    model = unwrap(ctx.model)
    names = tuple(getattr(model, "bn_names", (s.branch,)))
    if s.branch not in names:
        raise ConfigError(f"BN branch {s.branch!r} is not one of the model's {list(names)}")
    dev = torch.device(ctx.device)
    out = []
    with frozen([model]), torch.no_grad(), _autocast(dev, s.amp):
        for lo in range(0, len(ids), s.batch):
            x, _ = ctx.dataset.get_batch(ids[lo:lo + s.batch])
            out.append(model.features(to_float(x.to(dev)), s.branch).float())
    return torch.cat(out) if out else torch.empty(0, model.feature_dim, device=dev)


def objective_and_net(model: Any, s: Settings) -> tuple[Objective, Net]:
    """The per-sample training objective RCS uses for ``s.method``: the method's
    ``selection_loss()`` (acl / air / sat), built as RCS builds it."""
    kind = selection_loss_of(s.method)
    net = net_from_model(model, kind)
    return make_objective(kind, s.temperature, net.bn, s.air), net


def head_gradients(ctx: SelectionContext, ids: np.ndarray, s: Settings,
                   reduce: Callable[[Tensor], Tensor], salt: int = 0,
                   desc: str = "gradients") -> Iterator[tuple[np.ndarray, Tensor]]:
    """Per-sample gradients of the pretraining loss w.r.t. the head's Linear layers, one chunk
    of ``s.batch`` candidates at a time: yields ``(positions into ids, reduce(grads [b, P]))``.

    Exactly RCS's phase 1 (``rcs.selection.rcs``): two augmented views per image, a contrastive
    PGD attack of ``s.attack_steps`` steps, features without grad, then ``vmap(grad)`` of each
    sample's own loss terms (the other samples of its chunk held constant). ``ids`` are visited
    in a seeded random order so chunks mix images. ``reduce`` turns a chunk of gradients into
    what the caller keeps (a norm, a sketch), so at most ``grad_chunk x P`` floats are alive.
    Cost: ``(attack_steps + 2)`` forward and ``attack_steps`` backward passes per view, plus
    ``O(b·P)`` per chunk for the head gradients.
    """
    from rcs.data import Augment
    from rcs.utils.progress import progress

    if ctx.model is None:
        raise ConfigError("this selector needs the model being trained (ctx.model)")
    dev = torch.device(ctx.device)
    obj, net = objective_and_net(unwrap(ctx.model), s)
    head = HeadFn(net.head, "head", device=dev, dtype=torch.float32)
    augment = ctx.augment or (Augment(ctx.cfg.augment) if ctx.cfg is not None else Augment())
    order = rng_for(ctx, s, 0xB1 + salt).permutation(len(ids))
    salt_t = (ctx.seed, s.seed, ctx.epoch, salt)
    with frozen(net.modules):
        for c in progress(range(math.ceil(len(ids) / s.batch)), desc=desc, unit="batch"):
            pos = order[c * s.batch:(c + 1) * s.batch]
            x, y = ctx.dataset.get_batch(ids[pos])
            x, y = x.to(dev), (None if y is None else y.to(dev))
            gens = (torch_gen("cpu", *salt_t, c, 1), torch_gen(dev, *salt_t, c, 2))
            feats = attacked_features(net, obj, head, x, y, augment, s.eps, s.attack_steps,
                                      gens, s.amp)
            g = per_sample_grads(obj, head, feats, y, s.grad_chunk, reduce)
            yield pos, g
