"""CIFAR-stem ResNets (ResNet-18/34 with BasicBlock, ResNet-50 with Bottleneck) as encoders.

Stem: 3x3 conv (stride 1, no bias) + norm + ReLU, no max-pool; stages of ``width * 2**i``
planes (stride 1 for the first stage, 2 after); global average pool -> features of
``width * 2**(stages-1) * expansion`` dims (512 for ResNet-18/34, 2048 for ResNet-50 at width 64).
Downsample shortcut = 1x1 conv + norm. Convs are Kaiming-normal (fan_out), BN weight 1, bias 0.
Key names follow the torchvision/ACL layout (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.conv``), so published single-BN checkpoints map onto them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcs.errors import ConfigError
from rcs.models.multibn import NormFactory, plain_bn
from rcs.models.normalize import build_normalize


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) conv weights; every BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Downsample(nn.Module):
    """Projection shortcut: 1x1 conv (stride) + norm."""

    def __init__(self, cin: int, cout: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.bn = norm(cout, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convs."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = norm(planes, 2)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes, 2)
        out = planes * self.expansion
        self.downsample = (Downsample(cin, out, stride, norm)
                           if stride != 1 or cin != out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(out + sc, inplace=True)


class Bottleneck(nn.Module):
    """1x1 (planes) -> 3x3 (planes, stride) -> 1x1 (4 planes), each with norm; + shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = norm(planes, 2)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes, 2)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = norm(out, 2)
        self.downsample = (Downsample(cin, out, stride, norm)
                           if stride != 1 or cin != out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(out + sc, inplace=True)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """CIFAR-stem ResNet encoder: [0,1] NCHW images -> ``feature_dim`` features.

    ``block``: ``basic`` or ``bottleneck``; ``blocks``: blocks per stage (any number of stages,
    e.g. [2, 2, 2, 2] for ResNet-18, [1, 1] for a tiny 2-stage net); ``width``: first-stage
    planes; ``normalize``: name of the input normalisation (see ``rcs.models.normalize``).
    """

    def __init__(self, block: str, blocks: Sequence[int], width: int = 64,
                 norm: NormFactory = plain_bn, normalize: str = "none") -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"ResNet block {block!r} is not one of {', '.join(BLOCKS)}")
        if not blocks or any(b <= 0 for b in blocks) or width <= 0:
            raise ConfigError(f"ResNet needs width > 0 and blocks > 0 per stage, got "
                              f"width={width} blocks={list(blocks)}")
        self._spec = {"block": block, "blocks": list(blocks), "width": width,
                      "normalize": normalize}
        cls = BLOCKS[block]
        self.normalize = build_normalize(normalize)
        self.conv1 = conv3x3(3, width)
        self.bn1 = norm(width, 2)
        cin = width
        self.stage_names: list[str] = []
        for i, n in enumerate(blocks):
            planes = width * 2 ** i
            layers = []
            for j in range(n):
                layers.append(cls(cin, planes, (1 if i == 0 else 2) if j == 0 else 1, norm))
                cin = planes * cls.expansion
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.feature_dim = cin
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))), inplace=True)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def rebuild(self, norm: NormFactory) -> ResNet:
        """The same architecture with another norm factory (fresh weights)."""
        return ResNet(**self._spec, norm=norm)
