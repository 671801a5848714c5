"""Checkpoint files: atomic, versioned, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain values with a ``format`` marker. It may hold the
model, optimizer, scheduler and scaler states, epoch and step, every RNG state, the resolved
config (as a plain dict) and the current coreset (indices + JSON metadata). Nothing is pickled:
``weights_only=True`` refuses arbitrary objects, so a hostile file cannot run code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rcs.errors import CheckpointError
from rcs.utils.atomic import atomic_path

FORMAT = "rcs-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (plus the format marker) to ``path``.

    The previous file at ``path`` stays intact until the new one is completely written.
    """
    payload = {"format": FORMAT, "version": VERSION, **state}
    # through a Python file object: a full disk is an OSError (ENOSPC), which atomic_path turns
    # into a clear StorageError, instead of torch's "[enforce fail at inline_container.cc]"
    with atomic_path(path, "checkpoint") as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return Path(path)


def _reason(e: Exception) -> str:
    """A short, whole reason for a failed ``torch.load`` (torch's texts run on with advice and
    URLs about ``weights_only``; a cut would end mid-URL)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:  # the first sentence that is not torch's weights_only boilerplate
        if "weights_only" in ln or "http" in ln or ln.startswith(("Please", "Check", "(1)",
                                                                   "(2)", "WeightsUnpickler")):
            continue
        sentence = re.split(r"(?<=[.;])\s", ln)[0]
        if len(sentence) <= 160:
            return f"{type(e).__name__}: {sentence.rstrip('.')}"
    return f"{type(e).__name__}; not a readable torch checkpoint"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass the path of a .pt file "
                              "written by `rcs train` (e.g. runs/NAME/checkpoint.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear message
        text = str(e)
        if "GLOBAL" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"checkpoint '{path}' holds objects that are not plain tensors; rcs refuses to "
                "unpickle untrusted data. Re-save it as a state dict of tensors.") from None
        raise CheckpointError(f"checkpoint '{path}' is corrupt, truncated, or not a torch file "
                              f"({_reason(e)}); rcs never unpickles objects. Use an earlier "
                              "checkpoint or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not an rcs checkpoint (no '{FORMAT}' marker). To start from a plain "
            "state dict, load it with rcs.models.load_state_dict_strict(model, torch.load(...))")
    if int(state.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {state['version']}, newer "
                              f"than this rcs ({VERSION}); upgrade rcs-toolkit")
    return state


def load_state_dict_strict(module: nn.Module, state_dict: dict[str, torch.Tensor],
                           what: str = "model") -> None:
    """Load ``state_dict`` into ``module``; any missing/unexpected/mis-shaped key is an error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shape = sorted(k for k in set(own) & set(state_dict)
                   if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
        if shape:
            parts.append(f"{len(shape)} shape mismatches: " + ", ".join(
                f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:5]))
        raise CheckpointError(f"{what} does not match the checkpoint ({'; '.join(parts)}). Check "
                              "that model.arch/width/blocks/head/bn_names match the run that wrote "
                              "it (its config is saved inside the checkpoint and beside the run).")
    module.load_state_dict(state_dict, strict=True)


def coreset_to_state(indices: torch.Tensor | Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Pack a coreset for a checkpoint: int64 indices + JSON metadata string."""
    return {"indices": torch.as_tensor(indices, dtype=torch.int64),
            "meta_json": json.dumps(meta, sort_keys=True, default=str)}


def coreset_from_state(state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    return state["indices"], json.loads(state["meta_json"])
