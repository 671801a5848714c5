"""The trainer's persisted state: :class:`Progress`, the checkpoint (save, resume, start from
another run's weights) and the run summary (:class:`RunState`, a part of
:class:`rcs.train.trainer.Trainer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rcs.config import to_dict
from rcs.errors import CheckpointError
from rcs.selection.base import Coreset
from rcs.utils import run_guard
from rcs.utils.checkpoint_io import (
    coreset_from_state,
    coreset_to_state,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from rcs.utils.distributed import barrier
from rcs.utils.seed import rng_state, set_rng_state


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


class RunState:
    """Checkpoint and summary methods of :class:`rcs.train.trainer.Trainer` (uses its ``cfg``,
    ``env``, ``model``, ``extras``, ``method``, ``optimizer``, ``dataset``, ``coreset``,
    ``progress``, ``logger``, ``out`` and ``ckpt_path``)."""

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
