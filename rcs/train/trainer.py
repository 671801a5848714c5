"""The pretraining loop: full-data warm-up, a selection every F epochs, coreset epochs between.

Determinism: the batch order is a function of (seed, epoch) and every step draws its
augmentations and attack starts from a generator seeded by (seed, epoch, batch, rank), so a run
resumed from any checkpoint (epoch end or mid-epoch after SIGTERM/SIGUSR1) continues exactly
as the uninterrupted run would have.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.config import RunConfig, save_config, to_dict
from rcs.data import Augment, build_dataset, index_batches, train_val_split
from rcs.errors import CheckpointError, NonFiniteLossError
from rcs.methods import build_method
from rcs.methods.base import MultiForward, RunContext
from rcs.models import build_model
from rcs.selection.base import Coreset, SelectionContext, budget, build_selector
from rcs.selection.sampler import ReselectionSchedule
from rcs.train.bn import recalibrate_bn
from rcs.train.optim import build_optimizer
from rcs.train.schedule import (
    CosineWarmup,
    EpochCosineWarmup,
    epoch_position,
    planned_samples,
    set_lr,
)
from rcs.utils import run_guard
from rcs.utils.checkpoint_io import (
    coreset_from_state,
    coreset_to_state,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from rcs.utils.device import autocast, resolve_device
from rcs.utils.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    broadcast_buffers,
    broadcast_indices,
    detect_env,
    init_distributed,
    per_rank_batch,
)
from rcs.utils.metrics import MetricsLogger, coreset_fields
from rcs.utils.progress import bar
from rcs.utils.seed import generator, rng_state, seed_everything, seed_int, set_rng_state
from rcs.utils.signals import StopFlag, TrainingInterrupted


@dataclass
class Progress:
    """Where the run is: the next batch to train is ``batch`` of ``epoch`` (1-indexed)."""

    epoch: int = 1
    batch: int = 0
    step: int = 0
    samples_seen: int = 0
    selections: int = 0
    train_seconds: float = 0.0
    select_seconds: float = 0.0
    selected_epoch: int = 0
    """Epoch whose coreset is current: a run stopped between a selection and its first batch
    resumes with that coreset instead of selecting again."""


class Trainer:
    """Runs ``cfg`` end to end. ``resume``: 'auto' (continue out_dir/checkpoint.pt if present),
    'none' (start fresh, refusing to overwrite a finished run's checkpoint), or a path.
    ``stop``: the :class:`StopFlag` whose signals make ``fit`` checkpoint and stop (default
    SIGTERM and SIGUSR1; the SLURM launcher adds submitit's preemption signal)."""

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

    # ----------------------------------------------------------------- schedule
    def uses_coreset(self, epoch: int) -> bool:
        return self.cfg.selection.method != "full" and not self.reselect.is_warmup(epoch)

    def selects_at(self, epoch: int) -> bool:
        return self.cfg.selection.method != "full" and self.reselect.should_select(epoch)

    def epoch_size(self, full: bool) -> int:
        """Samples one epoch feeds (padded to a multiple of the world size, as the sampler does)."""
        n = len(self.candidates) if full else budget(self.cfg.selection.fraction,
                                                     len(self.candidates))
        w = self.env.world_size
        return -(-n // w) * w

    def planned_samples(self, epochs: float) -> int:
        """Samples seen after ``epochs`` epochs of this run's schedule (warm-up, then coreset)."""
        s = self.cfg.selection
        return planned_samples(
            epochs, self.epoch_size(full=True),
            None if s.method == "full" else self.epoch_size(full=False), s.warmup_epochs)

    def build_schedule(self) -> EpochCosineWarmup | CosineWarmup:
        """The lr schedule of ``train.lr_schedule`` (see :mod:`rcs.train.schedule`)."""
        t = self.cfg.train
        if t.lr_schedule == "epoch":
            return EpochCosineWarmup(base_lr=t.lr, epochs=t.epochs, min_lr=t.min_lr,
                                     warmup_epochs=min(float(t.epochs), t.lr_warmup_epochs))
        total = self.planned_samples(t.epochs)
        return CosineWarmup(base_lr=t.lr, total_samples=total, min_lr=t.min_lr,
                            warmup_samples=min(total, self.planned_samples(t.lr_warmup_epochs)))

    def lr_for_step(self, epoch: int, bi: int, n_batches: int, samples_after: int) -> float:
        """The rate of step ``bi`` (0-based) of ``epoch`` (``n_batches`` batches), after which
        ``samples_after`` samples are seen: the schedule's value once the step is done (as the
        published code, which steps its scheduler before the optimizer)."""
        if isinstance(self.schedule, EpochCosineWarmup):
            return self.schedule.lr_for_step(epoch, bi, n_batches)
        return self.schedule.lr_at(samples_after)

    def run_progress(self, epoch: int, bi: int, n_batches: int) -> float:
        """Share of the run done after step ``bi`` of ``epoch``, in the schedule's unit (epochs
        or samples), in [0, 1]; methods with their own schedules get it (BYORL's EMA rate)."""
        if isinstance(self.schedule, EpochCosineWarmup):
            return min(1.0, epoch_position(epoch, bi, n_batches) / self.cfg.train.epochs)
        return min(1.0, self.progress.samples_seen / max(1, self.schedule.total_samples))

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        p = self.progress
        state: dict[str, Any] = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "progress": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "rng": rng_state(), "config_json": json.dumps(to_dict(self.cfg)),
            "dataset": {"len": len(self.dataset), "fingerprint": self.dataset.fingerprint()},
            "complete": p.epoch > self.cfg.train.epochs,
        }
        if len(self.extras):
            state["extras"] = self.extras.state_dict()
        if method_state := self.method.state_dict():
            state["method"] = method_state
        if self.coreset is not None:
            state["coreset"] = coreset_to_state(self.coreset.indices, self.coreset.meta)
        return state

    def save(self) -> None:
        if self.env.is_main:
            save_checkpoint(self.ckpt_path, self.state())
        barrier(self.env)

    def _resume(self, resume: str) -> None:
        path = None if resume == "none" else (self.ckpt_path if resume == "auto" else Path(resume))
        fresh = path is None or (resume == "auto" and not path.exists())
        if self.env.is_main:  # one writer per folder, which never mixes two runs (run_guard)
            run_guard.open_run_folder(self.out, fresh)
        if fresh:
            return
        state = load_checkpoint(path, map_location=self.device)
        changed = run_guard.check_resume(state, self.cfg, path, self.out, self.env.is_main)
        self._load_weights(state, f"checkpoint '{path}'")
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
        if "coreset" in state:
            idx, meta = coreset_from_state(state["coreset"])
            self.coreset = Coreset(idx.numpy(), meta=meta)
        self.logger.log(event="resume", checkpoint=str(path), changed=changed,
                        threads=torch.get_num_threads(), world_size=self.env.world_size,
                        device=str(self.device), **state["progress"])
        if self.env.is_main:
            print(run_guard.resume_line(path, self.progress, self.cfg.train.epochs), flush=True)

    def _load_weights(self, state: dict[str, Any], what: str) -> None:
        """Model, method-owned modules and method state of a checkpoint of this dataset
        (``what`` names it in errors); resume and init both load through here."""
        if state.get("dataset", {}).get("fingerprint") not in (None, self.dataset.fingerprint()):
            raise CheckpointError(f"{what} was trained on another dataset (fingerprint "
                                  "differs); use a new --out folder or the same data")
        load_state_dict_strict(self.model, state["model"], what=what)
        if len(self.extras):
            load_state_dict_strict(self.extras, state.get("extras", {}),
                                   what=f"modules of method {self.cfg.train.method} in {what}")
        self.method.load_state_dict(state.get("method", {}))

    def coreset_file(self, path: str | Path) -> Coreset:
        """The coreset in ``path`` (``rcs select``'s .npz), checked against this run: same
        dataset (length and fingerprint), no validation image (the rest are candidates), the
        budget."""
        from rcs.errors import CoresetError

        cs = Coreset.load(path, dataset_len=len(self.dataset),
                          fingerprint=self.dataset.fingerprint())
        inval = np.intersect1d(cs.indices, self.val)
        if len(inval):
            raise CoresetError(
                f"coreset '{path}' holds {len(inval)} of this run's validation images: it was "
                "selected with another validation split (data.val_fraction or seed differ); "
                "select again with this run's config")
        want = budget(self.cfg.selection.fraction, len(self.candidates))
        if len(cs) != want:
            raise CoresetError(f"coreset '{path}' has {len(cs)} images but this run's "
                               f"selection.fraction={self.cfg.selection.fraction} needs {want}; "
                               "set the same fraction as the selection")
        cs.meta["file"] = str(path)
        return cs

    def init_from(self, path: str | Path, continue_schedule: bool = False) -> None:
        """Start this fresh run from the weights of pretraining checkpoint ``path`` (model and
        method-owned modules and state): e.g. a warm-up shared by runs that differ in seed or
        selector. ``continue_schedule`` also takes its optimizer state and its position
        (epoch, step, samples seen: the schedule goes on from there, the same warm-up counts
        for every run); otherwise optimizer and schedule start fresh. Random streams follow
        this run's seed. Refused for a run that has already trained or a mid-epoch checkpoint
        with ``continue_schedule``."""
        if self.progress.step or self.progress.epoch > 1:
            raise CheckpointError(f"init_from('{path}'): this run has already trained (epoch "
                                  f"{self.progress.epoch}); start it with resume='none'")
        state = load_checkpoint(path, map_location=self.device)
        self._load_weights(state, f"init checkpoint '{path}'")
        if continue_schedule:
            done = Progress(**state["progress"])
            if done.batch:
                raise CheckpointError(f"init checkpoint '{path}' was saved mid-epoch (batch "
                                      f"{done.batch}); continue from an epoch-end checkpoint")
            self.optimizer.load_state_dict(state["optimizer"])
            self.progress = Progress(epoch=done.epoch, step=done.step,
                                     samples_seen=done.samples_seen)
        self.logger.log(event="init", checkpoint=str(path), continue_schedule=continue_schedule,
                        epoch=self.progress.epoch)

    # ----------------------------------------------------------------- selection
    def select(self, epoch: int) -> None:
        t0 = time.perf_counter()
        coreset = None
        broadcast_buffers(self.model, self.env)  # every rank selects with rank 0's model
        given = self.cfg.selection.coreset and self.progress.selections == 0
        if given and self.env.is_main:
            coreset = self.coreset_file(self.cfg.selection.coreset)
        elif not given and (self.env.is_main or self.sharded_selection):
            ctx = SelectionContext(
                dataset=self.dataset, candidates=self.candidates, val=self.val,
                fraction=self.cfg.selection.fraction, seed=self.cfg.seed + self.cfg.selection.seed,
                model=self.model, augment=self.augment, device=self.device, cfg=self.cfg,
                epoch=epoch)
            coreset = self.selector.select(ctx)
        if coreset is not None and self.env.is_main:
            coreset.save(self.out / "coresets" / f"epoch_{epoch:04d}.npz")
        idx = broadcast_indices(torch.from_numpy(coreset.indices) if coreset else None,
                                self.env, self.device)
        self.coreset = coreset if coreset is not None else Coreset(idx.numpy())
        self.model.train()
        seconds = time.perf_counter() - t0
        self.progress.selections += 1
        self.progress.select_seconds += seconds
        self.progress.selected_epoch = epoch
        self.logger.log(event="selection", epoch=epoch, method=self.selector.name,
                        size=len(self.coreset), seconds=seconds,
                        augment_strength=self.augment.strength,
                        timings=self.coreset.meta.get("timings", {}),
                        **coreset_fields(self.coreset, self.dataset))

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

    def summary(self) -> dict[str, Any]:
        p = self.progress
        records = []
        if self.env.is_main and (self.out / "metrics.jsonl").exists():
            from rcs.utils.metrics import read_jsonl

            records = [r for r in read_jsonl(self.out / "metrics.jsonl")
                       if r.get("event") == "epoch"]
        return {
            "name": self.cfg.name, "method": self.cfg.train.method,
            "selector": self.cfg.selection.method, "fraction": self.cfg.selection.fraction,
            "epochs": self.cfg.train.epochs, "steps": p.step, "samples_seen": p.samples_seen,
            "selections": p.selections, "train_seconds": p.train_seconds,
            "select_seconds": p.select_seconds,
            "total_seconds": p.train_seconds + p.select_seconds,
            "final_loss": records[-1]["loss"] if records else None,
            "world_size": self.env.world_size, "device": str(self.device),
            "init": ({"checkpoint": self.cfg.train.init,
                      "continue_schedule": self.cfg.train.init_continue}
                     if self.cfg.train.init else None),
            "coreset_file": self.cfg.selection.coreset or None,
            "checkpoint": str(self.ckpt_path),
        }
