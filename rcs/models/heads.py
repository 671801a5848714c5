"""Projection heads (multi-BN like the encoder; the norm factory decides).

* ``ACLHead`` (ACL/AIR/DynACL/RCS CIFAR, "acl3"): ``fc1(d->h, bias) -> BN -> ReLU -> fc2(h->h,
  no bias) -> BN -> ReLU -> fc3(h->out, no bias) -> BN``; output ends in a BN, no ReLU.
* ``MLP2Head`` (RCS ImageNet WRN head, "mlp2"): ``fc1(d->h, bias) -> BN -> ReLU -> fc2(h->out,
  no bias) -> BN``.

* ``AdvCLHead`` (AdvCL, "advcl"): ``fc1(d->h, bias) -> BN -> ReLU -> fc2(h->out, bias)``; its
  BN is one plain BatchNorm1d shared by every BN branch, as published (PUBLISHED_METHODS.md A4.2);
  AdvCL L2-normalises the output inside its loss.
* ``RoCLHead`` (RoCL, "rocl"): ``fc1(d->h, bias) -> ReLU -> fc2(h->out, bias)``, no BN
  (h = 2048, out = 128 published).
* ``BYOLHead`` (BYOL/BYORL projector and predictor, "byol"): ``fc1(d->h, bias) -> BN -> ReLU ->
  fc2(h->out, bias)`` (h = 4096, out = 256 published); BN only after the first layer.

``h`` (hidden, ``model.head_hidden``; 0 = the head's default) defaults to the input dim ``d``
(512 -> 512 -> 512 -> 512 for ResNet-18), except RoCL (2048) and BYOL (4096).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from rcs.models.multibn import NormFactory, plain_bn


class ACLHead(nn.Module):
    """Three-layer ACL projection head with a norm after each linear layer."""

    def __init__(self, in_dim: int, out_dim: int = 512, norm: NormFactory = plain_bn,
                 hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or in_dim
        self.fc1 = nn.Linear(in_dim, h, bias=True)
        self.bn1 = norm(h, 1)
        self.fc2 = nn.Linear(h, h, bias=False)
        self.bn2 = norm(h, 1)
        self.fc3 = nn.Linear(h, out_dim, bias=False)
        self.bn3 = norm(out_dim, 1)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, f: Tensor) -> Tensor:
        z = F.relu(self.bn1(self.fc1(f)))
        z = F.relu(self.bn2(self.fc2(z)))
        return self.bn3(self.fc3(z))


class MLP2Head(nn.Module):
    """Two-layer projection head (RCS ImageNet WRN-28-10: 640 -> 640 -> 640)."""

    def __init__(self, in_dim: int, out_dim: int = 512, norm: NormFactory = plain_bn,
                 hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or in_dim
        self.fc1 = nn.Linear(in_dim, h, bias=True)
        self.bn1 = norm(h, 1)
        self.fc2 = nn.Linear(h, out_dim, bias=False)
        self.bn2 = norm(out_dim, 1)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, f: Tensor) -> Tensor:
        return self.bn2(self.fc2(F.relu(self.bn1(self.fc1(f)))))


class AdvCLHead(nn.Module):
    """AdvCL projection head with one BN shared by every branch (the norm factory is unused)."""

    def __init__(self, in_dim: int, out_dim: int = 128, norm: NormFactory = plain_bn,
                 hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or in_dim
        self.fc1 = nn.Linear(in_dim, h, bias=True)
        self.bn1 = plain_bn(h, 1)
        self.fc2 = nn.Linear(h, out_dim, bias=True)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, f: Tensor) -> Tensor:
        return self.fc2(F.relu(self.bn1(self.fc1(f))))


class RoCLHead(nn.Module):
    """RoCL projector: Linear -> ReLU -> Linear, no BN (the norm factory is unused)."""

    def __init__(self, in_dim: int, out_dim: int = 128, norm: NormFactory = plain_bn,
                 hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or 2048
        self.fc1 = nn.Linear(in_dim, h, bias=True)
        self.fc2 = nn.Linear(h, out_dim, bias=True)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, f: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(f)))


class BYOLHead(nn.Module):
    """BYOL projector / predictor: Linear -> BN -> ReLU -> Linear."""

    def __init__(self, in_dim: int, out_dim: int = 256, norm: NormFactory = plain_bn,
                 hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or 4096
        self.fc1 = nn.Linear(in_dim, h, bias=True)
        self.bn1 = norm(h, 1)
        self.fc2 = nn.Linear(h, out_dim, bias=True)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, f: Tensor) -> Tensor:
        return self.fc2(F.relu(self.bn1(self.fc1(f))))


HEADS: dict[str, type[nn.Module]] = {"acl3": ACLHead, "mlp2": MLP2Head, "advcl": AdvCLHead,
                                     "rocl": RoCLHead, "byol": BYOLHead}
"""Head name (``model.head``) -> class ``(in_dim, out_dim, norm, hidden=None)`` with an
``out_dim`` attribute; ``none`` means no head. Add one with :func:`register_head`."""


def register_head(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a projection head to :data:`HEADS` under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        HEADS[name] = cls
        return cls

    return deco
