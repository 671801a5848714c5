"""Input normalisation inside the model: inputs are always [0, 1] pixels (attacks work there)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rcs.errors import ConfigError

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "none": None,
}
"""Per-channel (mean, std) of each named normalisation; ``none`` is the identity."""


class Normalize(nn.Module):
    """``y[:, c] = (x[:, c] - mean[c]) / std[c]`` for NCHW input (buffers ``mean``, ``std``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"Normalize needs equally long mean/std with std > 0, got "
                              f"mean={list(mean)} std={list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32)
                             .reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32)
                             .reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def build_normalize(name: str) -> nn.Module:
    """``Normalize`` for ``imagenet``/``cifar10``, ``nn.Identity`` for ``none``."""
    if name not in NORMALIZATIONS:
        raise ConfigError(f"model.normalize={name!r} is not one of {', '.join(NORMALIZATIONS)}")
    stats = NORMALIZATIONS[name]
    return nn.Identity() if stats is None else Normalize(*stats)
