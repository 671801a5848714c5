"""RCS: robustness-aware coreset selection (Xu et al., NeurIPS 2023), PUBLISHED_METHODS.md D4.3.

Phases (each timed in ``meta["timings"]``):

1. **gradients**: candidates in a seeded order, in chunks of ``candidate_batch``; per chunk, the
   views are attacked (``train_attack_steps`` of PGD through the full model, input gradients only),
   features are taken without grad and cached, and per-sample gradients of the training loss
   w.r.t. the head's Linear layers are sketched into a :class:`GradientStore`
   (:mod:`rcs.selection.per_sample`); the pass is :mod:`rcs.selection.gradient_pass`, shared
   with the gradient baselines. ``granularity='batch'`` stores one row per chunk (the mean of
   its samples' gradients) and picks whole chunks.
2. **validation**: RD attacks on U and ``q_U`` (:mod:`rcs.selection.validation`), including
   re-attacks and new ``q_U`` inside the greedy rounds.
3. **greedy**: retrieval of the top-m gains and the head updates (:mod:`rcs.selection.greedy`):
   ``φ' ← φ' − η·(m/B)·∇φ mean_{picks} ℓ`` for the round's m picks and chunk size B (η per
   minibatch-worth of picks, as the published greedy steps η per picked minibatch, so R only
   sets how often q_U is refreshed, not how far the head moves); the gradient is exact (from
   cached features, one backward) and applied once.

The model is never modified: the head is a deep copy, and every module is held in eval mode with
frozen parameters (flags restored afterwards). Same seed and inputs give the same indices.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rcs.errors import ConfigError
from rcs.selection.api import (
    ConcatView,
    Net,
    check_fraction,
    first_view,
    frozen,
    library_context,
    net_from_callables,
    net_from_model,
)
from rcs.selection.base import Coreset, SelectionContext, class_quotas, register_selector
from rcs.selection.gains import ExactGains, feature_rows
from rcs.selection.gradient_pass import (
    attacked_chunks,
    candidate_order,
    fallback_augment,
    make_sketch,
)
from rcs.selection.greedy import greedy_rounds
from rcs.selection.per_sample import HeadFn, Objective, mean_grad, per_sample_grads
from rcs.selection.retrieval import Retriever
from rcs.selection.settings import SelectorSettings
from rcs.selection.sketch import Sketch
from rcs.selection.store import RowSink, concat_shards
from rcs.selection.validation import RDValidation


def _dist() -> tuple[int, int]:
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


@register_selector("rcs")
class RCSSelector:
    """RCS selector. Trainer: ``RCSSelector(cfg).select(ctx)``. Library (PUBLISHED_METHODS.md
    D4.4)::

        sel = RCSSelector(encoder=lambda x, bn: model.features(x, bn), head=model.head,
                          bn={"clean": "normal", "adv": "pgd"}, fraction=0.2, rounds=20)
        coreset = sel.select(train_dataset, val)   # val: a dataset or indices into train

    ``settings``: resolved by :class:`rcs.selection.settings.SelectorSettings` -- any
    :class:`SelectionConfig` field, plus

    - ``method``: the pretraining method (a registered name); the selection objective is its
      ``Method.selection_loss()`` (``rcs.methods.base``): acl, air (dynacl_air too, at plain
      weights) or sat (CE on the classifier);
    - ``temperature``, ``eps``, ``seed`` (library API), ``device``;
    - ``augment``: ``aug(x, generator) -> float [0, 1]`` (default: the context's, else the run
      config's ``augment``, else ``rcs.data.Augment()``);
    - ``model``: module(s) to freeze, or an rcs RobustModel instead of encoder/head;
    - ``work_dir`` (disk store, shards), ``grad_chunk`` (vmap chunk), ``amp`` (auto|bf16|off);
    - ``sketch_kind`` (auto | gaussian | countsketch). Default: auto on CUDA (Gaussian when the
      matrix fits 1 GB), countsketch on CPU, where a dense Gaussian projection of the ~0.8M
      head parameters costs about a quarter of the attack;
    - ``distributed`` (default False: the calling process does everything). True: call
      ``select`` on every rank of an initialised process group; each rank computes the
      gradients of chunks ``rank, rank + W, ...`` into shards under ``work_dir``, rank 0
      concatenates them and runs validation and greedy, the result is broadcast to all ranks.
    """

    name = "rcs"

    def __init__(self, cfg: Any = None, *, encoder: Any = None, head: Any = None,
                 bn: dict[str, Any] | None = None, fraction: float | None = None,
                 **settings: Any):
        if fraction is not None:
            settings["fraction"] = check_fraction(fraction)
        self.settings = SelectorSettings.resolve(cfg, selector=self.name, **settings)
        s = self.settings
        self.scfg, self.cfg, self.encoder, self.head, self.bn = s.selection, cfg, encoder, head, bn
        self.method, self.objective = s.method, s.objective_kind
        self.seed, self.device, self.augment = s.seed, s.device, s.augment
        self.model, self.work_dir = s.model, s.work_dir

    @property
    def distributed(self) -> bool:
        """Whether ``select`` runs on every rank of a process group (the trainer sets it)."""
        return self.settings.distributed

    @distributed.setter
    def distributed(self, value: bool) -> None:
        self.settings.distributed = bool(value)

    # ---------------------------------------------------------------------------------- entry
    def select(self, data: Any, val: Any = None) -> Coreset:
        """``select(ctx)`` (trainer) or ``select(train_dataset, val_dataset_or_indices)``."""
        if isinstance(data, SelectionContext):
            return self._run(data, self._net(data.model))
        net = self._net(self.model)
        ctx = library_context(data, val, self.scfg.fraction, int(self.seed or 0), net,
                              self.device, self.augment, self.cfg)
        cs = self._run(ctx, net)
        if isinstance(ctx.dataset, ConcatView):  # indices refer to the training dataset
            cs.meta["dataset_len"] = ctx.dataset.n
        return cs

    def _net(self, model: Any) -> Net:
        kind = self.objective
        if self.encoder is not None:
            if self.head is None:
                raise ConfigError("RCSSelector(encoder=...) also needs head=... (an nn.Module)")
            return net_from_callables(self.encoder, self.head, self.bn, self.model)
        if model is None:
            raise ConfigError("RCSSelector needs encoder= and head= (or model=, or ctx.model)")
        return net_from_model(model, kind)

    def _objective(self, net: Net) -> Objective:
        return self.settings.objective(net.bn)

    def candidate_features(self, ctx: SelectionContext) -> tuple[np.ndarray, torch.Tensor,
                                                                 np.ndarray | None]:
        """``(order, feats [n, V, D], labels)``: the candidates in the order the gradient pass
        visits them (chunks of ``candidate_batch`` in that order are the negatives of each
        other) and the attacked feature rows a selection with this seed computes for them
        (the whole pool, ``selection.pool`` ignored); for measuring selections from outside."""
        net, sc = self._net(ctx.model), self.scfg
        order = candidate_order(ctx, self.settings, pool=1.0)
        obj = self._objective(net)
        head = HeadFn(net.head, sc.scope, device=torch.device(ctx.device), dtype=torch.float32)
        sink = RowSink(len(order), None, np.float32)
        with frozen(net.modules):
            labels = self._gradient_phase(ctx, net, obj, head, None, order,
                                          {"grads": None, "feats": sink})
        feats = torch.from_numpy(sink.finish().rows(np.arange(len(order))))
        return order, feats.view(len(order), len(obj.views), -1), labels

    # --------------------------------------------------------------------------- phase 1
    def _gradient_phase(self, ctx: SelectionContext, net: Net, obj: Objective, head: HeadFn,
                        sketch: Sketch | None, order: np.ndarray, sinks: dict,
                        rank: int = 0, world: int = 1) -> np.ndarray | None:
        """Fill ``sinks['grads']`` / ``sinks['feats']`` (stores or ShardWriters) for this rank's
        chunks (:mod:`rcs.selection.gradient_pass`); returns the candidates' labels in
        ``order`` (or None)."""
        bsz = self.scfg.candidate_batch
        labels = np.full(len(order), -1, dtype=np.int64)
        chunks = range(rank, math.ceil(len(order) / bsz), world)
        augment = fallback_augment(ctx, self.augment)
        for c, y, feats in attacked_chunks(ctx, net, obj, head, order, self.settings, augment,
                                           chunks):
            lo = c * bsz
            hi = lo + len(feats)
            if y is not None:
                labels[lo:hi] = y.cpu().numpy()
            if sinks["grads"] is not None:  # sketched gradients (gradients=exact needs none)
                g = per_sample_grads(obj, head, feats, y, self.settings.grad_chunk, sketch)
                if self.scfg.granularity == "batch":
                    sinks["grads"].put(np.array([c]), g.mean(0, keepdim=True))
                else:
                    sinks["grads"].put(np.arange(lo, hi), g)
            sinks["feats"].put(np.arange(lo, hi), feats.flatten(1))
        return labels if (labels >= 0).any() else None

    # --------------------------------------------------------------------------- run
    def _work_dir(self, epoch: int, rank: int, world: int) -> Path | None:
        """Where disk stores and shards go (removed afterwards); None when all is in memory."""
        if self.scfg.store != "disk" and world == 1:
            return None
        base = self.work_dir or (Path(self.cfg.out_dir) / "selection" if self.cfg else None)
        if base is None:
            if world > 1:
                raise ConfigError("RCS on several ranks needs a shared folder for gradient "
                                  "shards: pass RCSSelector(work_dir=...) or set out_dir")
            return Path(tempfile.mkdtemp(prefix="rcs-select-"))
        return Path(base) / (f"e{epoch}-r{rank}" if world == 1 else f"e{epoch}")

    def _run(self, ctx: SelectionContext, net: Net) -> Coreset:
        t_start, sc = time.perf_counter(), self.scfg
        dev = torch.device(ctx.device)
        if len(ctx.val) == 0:
            raise ConfigError("RCS needs a non-empty validation set U: set data.val_fraction > 0 "
                              "(or pass validation data to select())")
        n_sel = ctx.selectable()[1]
        order = candidate_order(ctx, self.settings, sc.pool)
        bsz, batch_mode = sc.candidate_batch, sc.granularity == "batch"
        n_chunks = math.ceil(len(order) / bsz)
        obj = self._objective(net)
        head = HeadFn(net.head, sc.scope, device=dev, dtype=torch.float32)
        sketch = make_sketch(ctx, self.settings, head.dim)
        rank, world = _dist() if self.settings.distributed else (0, 1)
        work = self._work_dir(ctx.epoch, rank, world)
        if world > 1:  # no stale shards from an interrupted selection of this epoch
            if rank == 0:
                shutil.rmtree(work, ignore_errors=True)
            torch.distributed.barrier()
        timings: dict[str, float] = {}
        try:
            with frozen(net.modules):
                t0 = time.perf_counter()
                disk = sc.store == "disk"
                fdt = np.float16 if disk else np.float32  # cached features
                n_rows = n_chunks if batch_mode else len(order)
                exact = sc.gradients == "exact"
                if world > 1:
                    sinks = {"g": None if exact else RowSink(shard=work / "g",
                                                             name=f"r{rank:05d}"),
                             "f": RowSink(shard=work / "f", name=f"r{rank:05d}", dtype=fdt)}
                else:
                    sinks = {"g": None if exact else RowSink(n_rows, work / "grads.npy"
                                                             if disk else None),
                             "f": RowSink(len(order), work / "feats.npy" if disk else None, fdt)}
                labels = self._gradient_phase(ctx, net, obj, head, sketch, order,
                                              {"grads": sinks["g"], "feats": sinks["f"]},
                                              rank, world)
                stores = {k: s.finish() if s is not None else None for k, s in sinks.items()}
                if world > 1:
                    torch.distributed.barrier()
                    if rank == 0:
                        stores = {"g": None if exact else concat_shards(
                                      work / "g", n_rows, work / "grads.npy" if disk else None),
                                  "f": concat_shards(work / "f", len(order), None, fdt)}
                        lab = getattr(ctx.dataset, "labels", None)
                        labels = None if lab is None else np.asarray(lab)[order]
                timings["gradients"] = time.perf_counter() - t0
                out = None
                if rank == 0:
                    out = self._select(ctx, net, obj, head, sketch, order, stores, labels,
                                       n_sel)
                if world > 1:
                    box = [out]
                    torch.distributed.broadcast_object_list(box, src=0)
                    out = box[0]
        finally:
            if world > 1:
                torch.distributed.barrier()
            if work is not None and rank == 0:
                shutil.rmtree(work, ignore_errors=True)
        indices, gains, extra = out
        timings["total"] = time.perf_counter() - t_start
        meta = ctx.base_meta(self.name) | extra | {"timings": timings | extra["timings"]}
        meta |= {"fraction": ctx.fraction, "budget": n_sel, "world_size": world}
        return Coreset(indices, gains=gains, meta=meta)

    def _select(self, ctx: SelectionContext, net: Net, obj: Objective, head: HeadFn,
                sketch: Sketch, order: np.ndarray, stores: dict, labels: np.ndarray | None,
                n_sel: int) -> tuple[np.ndarray, list[float], dict]:
        """Validation and greedy rounds on rank 0."""
        from rcs.data import to_float
        sc, dev = self.scfg, torch.device(ctx.device)
        bsz, batch_mode, n = sc.candidate_batch, sc.granularity == "batch", len(order)
        t0 = time.perf_counter()
        images = to_float(first_view(ctx.dataset.get_batch(np.asarray(ctx.val))[0])).to(dev)
        rdv = RDValidation(net.features, head, images, sc.rd_distance, net.bn, self.settings.eps,
                           sc.val_attack_steps, None, bsz, (ctx.seed, sc.seed, ctx.epoch),
                           sc.val_attack_start)
        q, rd = rdv.grad()
        rd_hist, t_val, t_val_init = [rd], 0.0, time.perf_counter() - t0
        feats, views = stores["f"], len(obj.views)
        lab_t = None if labels is None else torch.from_numpy(labels).to(dev)

        def positions(units: np.ndarray) -> np.ndarray:
            if not batch_mode:
                return units
            return np.concatenate([np.arange(u * bsz, min(n, (u + 1) * bsz)) for u in units])

        def update(r: int, units: np.ndarray) -> np.ndarray:
            nonlocal t_val
            pos, groups = positions(units), []
            for c in np.unique(pos // bsz):
                lo, hi = int(c) * bsz, min(n, (int(c) + 1) * bsz)
                f = feature_rows(feats, lo, hi, views, dev)
                p = torch.from_numpy(pos[pos // bsz == c] - lo).to(dev)
                groups.append((f, None if lab_t is None else lab_t[lo:hi], p))
            # η per candidate_batch picked, as the published greedy steps η per picked
            # minibatch: the head moves the same whatever the number of rounds
            head.step(mean_grad(obj, head, groups), sc.eta * len(pos) / bsz)
            t1 = time.perf_counter()
            if sc.val_reattack_every and (r + 1) % sc.val_reattack_every == 0:
                rdv.attack(r + 1)
            qn, rdn = rdv.grad()  # from cached features of U (and its adversarial images)
            rd_hist.append(rdn)
            t_val += time.perf_counter() - t1
            return as_query(qn)

        t_g = time.perf_counter()
        sizes = np.diff(np.r_[np.arange(0, n, bsz), n]) if batch_mode else None
        n_units = n if sizes is None else len(sizes)
        if stores["g"] is None:  # exact gains from the cached features
            retr = ExactGains(obj, head, feats, n, bsz, lab_t, batch_mode, device=dev)
            as_query = lambda v: v.float().cpu().numpy()  # noqa: E731
        else:
            retr = Retriever(stores["g"], sc.index, seed=int(ctx.seed))
            as_query = lambda v: sketch(v[None])[0].cpu().numpy()  # noqa: E731
        groups = quotas = None
        if sc.class_balanced:
            if labels is None:
                raise ConfigError("selection.class_balanced needs a labelled dataset; set it "
                                  "to false for unlabelled data")
            classes, quotas = class_quotas(labels, n_sel)
            groups = np.searchsorted(classes, labels)
        res = greedy_rounds(n_units, n_sel, sc.rounds, as_query(q), retr.search, update, sizes,
                            groups, quotas)
        pos = positions(res.units)
        pos = pos[:len(pos) - res.trim]
        t_greedy = time.perf_counter() - t_g - t_val
        extra = {"train_method": self.method, "objective": self.objective,
                 "settings": dataclasses.asdict(sc) | (
                     {} if self.seed is None else {"seed": int(self.seed)}),
                 "round_gain_mean": res.mean_gains, "rounds_run": len(res.picks),
                 "rd_per_round": rd_hist, "trimmed": res.trim, "val_attacks": rdv.attacks,
                 "retrieval": retr.engine, "grad_dim": head.dim, "param_names": head.names,
                 "sketch": None if stores["g"] is None else {"kind": sketch.kind,
                                                             "dim": sketch.dim},
                 "timings": {"validation": t_val_init + t_val, "greedy": t_greedy}}
        return order[pos], res.gains, extra
