"""The pretraining loop: full-data warm-up, a selection every F epochs, coreset epochs between.

Determinism: the batch order is a function of (seed, epoch) and every step draws its
augmentations and attack starts from a generator seeded by (seed, epoch, batch, rank), so a run
resumed from any checkpoint (epoch end or mid-epoch after SIGTERM/SIGUSR1) continues exactly
as the uninterrupted run would have.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.config import RunConfig, save_config
from rcs.data import Augment, build_dataset, index_batches, train_val_split
from rcs.errors import NonFiniteLossError
from rcs.methods import build_method
from rcs.methods.base import MultiForward, RunContext
from rcs.models import build_model
from rcs.selection.base import Coreset, build_selector
from rcs.selection.sampler import ReselectionSchedule
from rcs.train.bn import recalibrate_bn
from rcs.train.coreset_phase import CoresetPhase
from rcs.train.optim import build_optimizer
from rcs.train.run_schedule import RunSchedule
from rcs.train.run_state import Progress, RunState
from rcs.train.schedule import set_lr
from rcs.utils import run_guard
from rcs.utils.device import autocast, resolve_device
from rcs.utils.distributed import (
    DistEnv,
    all_reduce_mean,
    broadcast_buffers,
    detect_env,
    init_distributed,
    per_rank_batch,
)
from rcs.utils.metrics import MetricsLogger
from rcs.utils.progress import bar
from rcs.utils.seed import generator, seed_everything, seed_int
from rcs.utils.signals import StopFlag, TrainingInterrupted


class Trainer(RunSchedule, CoresetPhase, RunState):
    """Runs ``cfg`` end to end. ``resume``: 'auto' (continue out_dir/checkpoint.pt if present),
    'none' (start fresh, refusing to overwrite a finished run's checkpoint), or a path.
    ``stop``: the :class:`StopFlag` whose signals make ``fit`` checkpoint and stop (default
    SIGTERM and SIGUSR1; the SLURM launcher adds submitit's preemption signal).

    Its parts live in their own modules: the schedule arithmetic (:mod:`rcs.train.run_schedule`),
    the coreset phase (:mod:`rcs.train.coreset_phase`), checkpoints and the run summary
    (:mod:`rcs.train.run_state`); this module holds the setup and the training loop."""

    def __init__(self, cfg: RunConfig, resume: str = "auto", stop: StopFlag | None = None):
        self.cfg = cfg
        self.stop_flag = stop
        self.device = resolve_device(cfg.device)
        # train.batch_size is the global batch: refuse one the ranks cannot split, before
        # joining the process group (every rank fails at once instead of waiting)
        per_rank_batch(cfg.train.batch_size, detect_env().world_size)
        self.env: DistEnv = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.env.enabled:
            self.device = torch.device("cuda", self.env.local_rank)
        # each rank trains its share of every step's global batch
        self.rank_batch = per_rank_batch(cfg.train.batch_size, self.env.world_size)
        seed_everything(cfg.seed)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.method = build_method(cfg.train.method, cfg)

        self.dataset = build_dataset(cfg.data)
        self.candidates, self.val = train_val_split(len(self.dataset), cfg.data.val_fraction,
                                                    cfg.seed)
        self.augment = Augment(cfg.augment)
        self.model = build_model(cfg.model, classifier=self.method.needs_labels).to(self.device)
        if cfg.train.channels_last and self.device.type == "cuda":  # a GPU layout: on CPU it
            self.model = self.model.to(memory_format=torch.channels_last)  # gains nothing and
            # torch 2.13's one-thread channels_last backward can segfault
        # method-owned modules (BYORL predictor + EMA target, AdvCL pseudo-label heads): inside
        # the DDP forward, trained with the model where they require grad, saved in checkpoints
        self.extras = nn.ModuleDict(self.method.setup(RunContext(
            self.model, self.dataset, self.device, self.env, self.out))).to(self.device)
        self.forward: nn.Module = MultiForward(self.model, self.extras)
        if self.env.enabled:
            self.forward = nn.parallel.DistributedDataParallel(
                self.forward,
                device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.train.compile:
            self.forward = torch.compile(self.forward)
        self.optimizer = build_optimizer(
            [*self.model.parameters(), *(p for p in self.extras.parameters() if p.requires_grad)],
            cfg.train)
        self.selector = build_selector(cfg.selection.method, cfg)
        # selectors that can shard their work (RCS: gradients per rank, greedy on rank 0) run
        # on every rank under DDP; the others run on rank 0 and the result is broadcast
        self.sharded_selection = self.env.enabled and hasattr(self.selector, "distributed")
        if self.sharded_selection:
            self.selector.distributed = True
        self.reselect = ReselectionSchedule.from_config(cfg)
        self.coreset: Coreset | None = None
        self.progress = Progress()
        self.schedule = self.build_schedule()
        self.logger = MetricsLogger.from_config(self.out / "metrics.jsonl", cfg,
                                                enabled=self.env.is_main)
        self._resume(resume)
        if cfg.train.init and self.progress.step == 0 and self.progress.epoch == 1:
            self.init_from(cfg.train.init, cfg.train.init_continue)  # a fresh run only

    # ----------------------------------------------------------------- training
    def fit(self, until_epoch: int | None = None) -> dict[str, Any]:
        """Train to the end (or through epoch ``until_epoch``, e.g. a warm-up shared by several
        runs; the checkpoint is saved there) or until a stop signal; returns the run summary."""
        last = self.cfg.train.epochs if until_epoch is None else min(until_epoch,
                                                                     self.cfg.train.epochs)
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out / "config.yaml")
        stop = (self.stop_flag or StopFlag()).install()
        try:
            while self.progress.epoch <= last:
                self._epoch(self.progress.epoch, stop)
        finally:
            stop.restore()
            self.logger.close()
        if until_epoch is not None and last % self.cfg.train.checkpoint_every:
            self.save()
        summary = self.summary()
        if self.env.is_main:
            from rcs.utils.serialize import write_json

            write_json(self.out / "summary.json", summary)
            run_guard.unlock_run(self.out)
        return summary

    def _epoch(self, epoch: int, stop: StopFlag) -> None:
        p, cfg = self.progress, self.cfg
        # the epoch's schedules first (DynACL's augmentation strength), then the selection, so
        # it augments with this epoch's strength (as published) also right after a resume
        extra = self.method.on_epoch_start(epoch, self.augment)
        if p.batch == 0 and self.selects_at(epoch) and p.selected_epoch != epoch:
            self.select(epoch)
        indices = self.coreset.indices if self.uses_coreset(epoch) else self.candidates
        batches = index_batches(indices, self.rank_batch, shuffle=True, seed=cfg.seed,
                                epoch=epoch, rank=self.env.rank, world_size=self.env.world_size)
        self.model.train()
        t0, losses, seen0 = time.perf_counter(), [], p.samples_seen
        pbar = bar(len(batches), desc=f"epoch {epoch}/{cfg.train.epochs}", unit="batch")
        pbar.update(p.batch)
        for bi in range(p.batch, len(batches)):
            if self._should_stop(stop):
                p.train_seconds += time.perf_counter() - t0
                self.save()
                raise TrainingInterrupted(stop.signum or 15, str(self.ckpt_path))
            loss = self._step(epoch, bi, batches[bi], len(batches))
            losses.append(loss)
            p.batch = bi + 1
            pbar.update(1)
            pbar.set_postfix(loss=f"{loss:.4f}")
            every = cfg.train.checkpoint_every_steps
            if every and p.step % every == 0 and p.batch < len(batches):
                self.save()
        pbar.close()
        if cfg.train.bn_recalibration and self.uses_coreset(epoch):
            self._recalibrate_bn(epoch)
        seconds = time.perf_counter() - t0
        p.train_seconds += seconds
        p.epoch, p.batch = epoch + 1, 0
        mean_loss = all_reduce_mean(float(np.mean(losses)) if losses else float("nan"),
                                    self.env, self.device)
        self.logger.log(event="epoch", epoch=epoch, loss=mean_loss, seconds=seconds,
                        images_per_s=(p.samples_seen - seen0) / max(seconds, 1e-9),
                        epoch_size=len(indices) if not self.env.enabled else None,
                        lr=self.optimizer.param_groups[0]["lr"], step=p.step, **extra)
        if epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs:
            self.save()

    def _recalibrate_bn(self, epoch: int) -> None:
        """BN running statistics from ``train.bn_recalibration`` random full-data batches (see
        :mod:`rcs.train.bn`); seeded by (seed, epoch, rank), so a resumed run repeats it."""
        cfg, bs = self.cfg, self.rank_batch
        rng = generator(cfg.seed, epoch, self.env.rank, 0xB7)
        idx = rng.choice(self.candidates, min(len(self.candidates),
                                              cfg.train.bn_recalibration * bs), replace=False)
        def forward(b: int) -> None:
            part = idx[b * bs:(b + 1) * bs]
            x, y = self.dataset.get_batch(part)
            gen = torch.Generator(device=self.device).manual_seed(
                seed_int(cfg.seed, epoch, 2**31 + b, self.env.rank))
            self.method.prepare_batch(part)
            with autocast(self.device, cfg.train.amp):
                self.method.step(self.forward, self.model, x.to(self.device),
                                 None if y is None else y.to(self.device), self.augment, gen)

        n = -(-len(idx) // bs)
        recalibrate_bn(self.model, [functools.partial(forward, b) for b in range(n)],
                       self.env.enabled)

    def _should_stop(self, stop: StopFlag) -> bool:
        if not self.env.enabled:
            return stop.set
        flag = torch.tensor([1.0 if stop.set else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _step(self, epoch: int, bi: int, idx: np.ndarray, n_batches: int) -> float:
        p, cfg = self.progress, self.cfg
        # the attack runs the raw model in eval mode (running BN statistics): every rank takes
        # rank 0's, so a run resumed from rank 0's checkpoint continues exactly
        broadcast_buffers(self.model, self.env)
        x, y = self.dataset.get_batch(idx)
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True) if y is not None else None
        gen = torch.Generator(device=self.device).manual_seed(
            seed_int(cfg.seed, epoch, bi, self.env.rank))
        batch_samples = len(idx) * self.env.world_size
        set_lr(self.optimizer, self.lr_for_step(epoch, bi, n_batches,
                                                p.samples_seen + batch_samples))
        self.method.prepare_batch(idx)
        with autocast(self.device, cfg.train.amp):
            out = self.method.step(self.forward, self.model, x, y, self.augment, gen)
        loss = out.loss.float()
        value = float(loss.detach())
        if not np.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at step {p.step} (epoch {epoch}, batch {bi}); training stopped. "
                f"The last good checkpoint is {self.ckpt_path} (if one was written). Lower "
                "train.lr, check the data, or set train.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_([q for g in self.optimizer.param_groups for q in g["params"]],
                                     cfg.train.grad_clip)
        self.optimizer.step()
        p.samples_seen += batch_samples
        self.method.after_step(self.run_progress(epoch, bi, n_batches))
        p.step += 1
        if p.step % cfg.train.log_every == 0:
            self.logger.log(event="step", epoch=epoch, step=p.step, loss=value,
                            lr=self.optimizer.param_groups[0]["lr"], samples_seen=p.samples_seen,
                            **out.metrics)
        return value
