"""The fine-tuning loop shared by SLF, ALF and AFF: SGD, step-wise lr decay, resume, logging.

For epochs e = 1..E, the learning rate is ``lr * 0.1 ** #{m in milestones : e > m}`` (what
``MultiStepLR(milestones, 0.1)`` stepped once per epoch gives), and the optimiser is
``SGD(momentum, weight_decay)`` over the parameters that require gradients. Each epoch visits
``indices`` in the order ``index_batches(seed, epoch)``; each batch draws its augmentation and
attack starts from a generator seeded by (seed, epoch, batch), so a run resumed from the
epoch-end state file continues as the uninterrupted run would have.

After every epoch ``state.pt`` (atomic) holds the trained modules, the optimiser and the loss
history; a finished run leaves it as the record of the last epoch (the published protocol
evaluates the last-epoch model; there is no test-set model selection).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.data import ImageDataset, index_batches
from rcs.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from rcs.finetune.protocol import ModeSettings
from rcs.utils.checkpoint_io import load_checkpoint, load_state_dict_strict, save_checkpoint
from rcs.utils.metrics import MetricsLogger
from rcs.utils.progress import bar
from rcs.utils.seed import seed_int
from rcs.utils.signals import StopFlag, TrainingInterrupted

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""``step(x_uint8, y, generator) -> scalar loss`` (sets the train/eval modes it needs)."""


@dataclass
class FitResult:
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def lr_at(settings: ModeSettings, epoch: int) -> float:
    """Learning rate of 1-indexed ``epoch``: x0.1 for every milestone already passed."""
    return settings.lr * 0.1 ** sum(1 for m in settings.milestones if epoch > m)


def fit_identity(pre: Any, cfg: Any, dataset: ImageDataset) -> dict[str, Any]:
    """What a resumable state must match besides the settings: the pretrained weights, the
    training data and the fine-tuning config (attack, beta, branch, augmentation, seed)."""
    from rcs.config import to_dict

    ft = to_dict(cfg.finetune)
    for mode in ("slf", "alf", "aff", "modes"):
        ft.pop(mode, None)
    return {"pretrained": pre.fingerprint(), "dataset": dataset.fingerprint(),
            "n": len(dataset), "finetune": ft}


def fit(step: StepFn, modules: dict[str, nn.Module], settings: ModeSettings,
        dataset: ImageDataset, indices: np.ndarray, device: torch.device, out: Path,
        seed: int = 0, min_batch: int = 1, resume: bool = True,
        identity: dict[str, Any] | None = None) -> FitResult:
    """Train ``modules`` (their trainable parameters) with ``step`` for ``settings.epochs``.

    ``min_batch``: skip a last batch smaller than this (BatchNorm in train mode needs 2).
    ``out`` receives ``metrics.jsonl`` and ``state.pt``. ``identity`` (e.g. the pretrained
    model's and the dataset's fingerprints) is stored with the state: a state written with other
    settings or another identity is never resumed (``CheckpointError``); ``resume=False`` moves
    an old state aside and starts over.
    """
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to fine-tune: no parameter requires a gradient")
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    identity_json = json.dumps(identity or {}, sort_keys=True, default=str)
    logger = MetricsLogger(out / "metrics.jsonl")
    result = FitResult(epochs=settings.epochs, seconds=0.0)
    first, start_batch, partial = 1, 0, ([], 0.0)
    if resume and state_path.exists():
        state = load_checkpoint(state_path, map_location=device)
        if state.get("settings") != settings.as_dict():
            raise CheckpointError(f"'{state_path}' was written with other settings "
                                  f"({state.get('settings')}); start over with --resume none "
                                  "or use another --out")
        if state.get("identity_json") != identity_json:
            raise CheckpointError(f"'{state_path}' belongs to another pretrained model, dataset "
                                  "or fine-tuning config; start over with --resume none or use "
                                  "another --out")
        for name, m in modules.items():
            load_state_dict_strict(m, state["modules"][name], what=f"fine-tuned {name}")
        opt.load_state_dict(state["optimizer"])
        result.losses, result.seconds = list(state["losses"]), float(state["seconds"])
        first = result.resumed_from = int(state["epoch"]) + 1
        start_batch = int(state.get("batch", 0))  # > 0: stopped by a signal inside the epoch
        partial = ([float(v) for v in state.get("epoch_losses", [])],
                   float(state.get("epoch_seconds", 0.0)))
        logger.log(event="resume", epoch=first - 1, batch=start_batch, mode=settings.mode)
        print(f"[finetune] resuming {settings.mode.upper()} from {state_path}: epoch "
              f"{first}/{settings.epochs}, batch {start_batch}", flush=True)
    elif state_path.exists() or (out / "metrics.jsonl").exists():
        for old in (state_path, out / "metrics.jsonl"):
            if old.exists():
                old.replace(old.with_name(old.name + ".prev"))
        logger = MetricsLogger(out / "metrics.jsonl")

    def state(epoch_done: int, **more: Any) -> dict[str, Any]:
        return {"modules": {n: m.state_dict() for n, m in modules.items()},
                "optimizer": opt.state_dict(), "epoch": epoch_done, "losses": result.losses,
                "seconds": result.seconds, "settings": settings.as_dict(),
                "identity_json": identity_json, **more}

    # SIGTERM / SIGUSR1: save between two batches, then stop (signals another handler owns,
    # e.g. submitit's inside a SLURM job, which requeues the job instead, are left to it)
    stop = StopFlag(tuple(s for s in StopFlag.SIGNALS
                          if signal.getsignal(s) in (signal.SIG_DFL, None))).install()
    try:
        _epochs(step, settings, dataset, indices, device, seed, min_batch, opt, logger, result,
                state, state_path, stop, first, start_batch, partial)
    finally:
        stop.restore()
        logger.close()
    return result


def _epochs(step: StepFn, settings: ModeSettings, dataset: ImageDataset, indices: np.ndarray,
            device: torch.device, seed: int, min_batch: int, opt: torch.optim.Optimizer,
            logger: MetricsLogger, result: FitResult, state: Callable[..., dict[str, Any]],
            state_path: Path, stop: StopFlag, first: int, start_batch: int,
            partial: tuple[list[float], float]) -> None:
    """Epochs ``first``..E of :func:`fit` (from batch ``start_batch`` of the first one, whose
    earlier losses and seconds are ``partial``)."""
    for epoch in range(first, settings.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(settings, epoch)
        batches = index_batches(indices, settings.batch_size, shuffle=True, seed=seed,
                                epoch=epoch)
        batches = [b for b in batches if len(b) >= min_batch]
        skip, (losses, done_s) = (start_batch, partial) if epoch == first else (0, ([], 0.0))
        losses = list(losses)
        t0 = time.perf_counter() - done_s
        pbar = bar(len(batches), desc=f"{settings.mode} epoch {epoch}/{settings.epochs}",
                   unit="batch")
        pbar.update(skip)
        for bi, idx in enumerate(batches):
            if bi < skip:
                continue
            if stop.set:  # the state of this point: the next run continues at batch bi
                save_checkpoint(state_path, state(
                    epoch - 1, batch=bi, epoch_losses=losses,
                    epoch_seconds=time.perf_counter() - t0))
                raise TrainingInterrupted(stop.signum or 15, str(state_path))
            x, y = dataset.get_batch(idx)
            if y is None:
                raise DataError(f"dataset {dataset.name!r} has no labels; fine-tuning needs a "
                                "labelled split (set data.split=train)")
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            gen = torch.Generator(device=device).manual_seed(seed_int(seed, epoch, bi, 7))
            loss = step(x, y, gen)
            value = float(loss.detach())
            if not np.isfinite(value):
                raise NonFiniteLossError(f"{settings.mode} loss is {value} at epoch {epoch}, "
                                         f"batch {bi}; lower finetune.{settings.mode}.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(value)
            pbar.update(1)
            pbar.set_postfix(loss=f"{value:.4f}")
        pbar.close()
        seconds = time.perf_counter() - t0
        result.seconds += seconds
        mean = float(np.mean(losses)) if losses else float("nan")
        result.losses.append(mean)
        logger.log(event="epoch", mode=settings.mode, epoch=epoch, loss=mean,
                   lr=opt.param_groups[0]["lr"], seconds=seconds)
        save_checkpoint(state_path, state(epoch))
