"""Projection heads (multi-BN like the encoder; the norm factory decides).

* ``ACLHead`` (ACL/AIR/DynACL/RCS CIFAR, "acl3"): ``fc1(d->h, bias) -> BN -> ReLU -> fc2(h->h,
  no bias) -> BN -> ReLU -> fc3(h->out, no bias) -> BN``; output ends in a BN, no ReLU.
* ``MLP2Head`` (RCS ImageNet WRN head, "mlp2"): ``fc1(d->h, bias) -> BN -> ReLU -> fc2(h->out,
  no bias) -> BN``.

``h`` (hidden) defaults to the input dim ``d`` (512 -> 512 -> 512 -> 512 for ResNet-18).
"""

from __future__ import annotations

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


HEADS: dict[str, type[ACLHead] | type[MLP2Head]] = {"acl3": ACLHead, "mlp2": MLP2Head}
"""Head name (``model.head``) -> class ``(in_dim, out_dim, norm)``; ``none`` means no head."""
