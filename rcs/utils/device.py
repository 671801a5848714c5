"""Device selection, bf16 autocast, and the module inside DDP / compile wrappers."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def unwrap(model: Any) -> Any:
    """The module inside DDP / DataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers, in any nesting: wrappers are looked through until a module with
    ``features`` (an rcs RobustModel) or no further wrapper is reached."""
    while not hasattr(model, "features"):
        attr = next((a for a in ("module", "_orig_mod") if hasattr(model, a)), None)
        if attr is None:
            return model
        model = getattr(model, attr)
    return model


def amp_enabled(device: torch.device | str, amp: str) -> bool:
    """Whether ``amp`` (``train.amp``: auto | bf16 | off) asks for bf16 autocast on
    ``device``: ``bf16`` always, ``auto`` on CUDA only."""
    return amp == "bf16" or (amp == "auto" and torch.device(device).type == "cuda")


def autocast(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when :func:`amp_enabled`, else a null context."""
    if amp_enabled(device, amp):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    from rcs.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name!r} is not a device torch knows; use auto, cpu, cuda, "
                          "cuda:N or mps (e.g. --set device=cpu)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available; "
                          "use --set device=cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' does not exist: this machine has "
                          f"{torch.cuda.device_count()} GPU(s) (cuda:0 .. "
                          f"cuda:{torch.cuda.device_count() - 1})")
    return dev
