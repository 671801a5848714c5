"""Device selection."""

from __future__ import annotations

import torch


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
