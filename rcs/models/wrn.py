"""Wide ResNet (Zagoruyko & Komodakis) encoder: WRN-28-10 and general WRN-(6n+4)-k.

Pre-activation wide basic blocks ``o = relu(bn1(x)); out = conv2(relu(bn2(conv1(o))))``,
``y = out + (x if shapes match else convShortcut(o))`` (1x1 conv, no norm). Channels
16 -> 16k, 32k, 64k (strides 1, 2, 2), n = (depth - 4) / 6 blocks per stage, then a final
norm + ReLU + global average pool -> ``64k`` features (640 for WRN-28-10).

The ``width`` knob scales the base 16 as ``base = max(1, 16 * width // 64)``: the config's
default width 64 gives the standard 16; width 16 gives base 4 (tiny test models). ``blocks``
overrides the blocks per stage (stage i has ``base * k * 2**i`` channels). Key names follow
the usual WRN layout (``conv1``, ``block1.layer.0.bn1``, ``convShortcut``, final ``bn1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcs.errors import ConfigError
from rcs.models.multibn import NormFactory, plain_bn
from rcs.models.normalize import build_normalize
from rcs.models.resnet import conv3x3, init_conv_bn


class WideBlock(nn.Module):
    """Pre-activation wide basic block (no dropout)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        self.bn1 = norm(cin, 2)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = norm(cout, 2)
        self.conv2 = conv3x3(cout, cout)
        self.equal = cin == cout and stride == 1
        self.convShortcut = (None if self.equal
                             else nn.Conv2d(cin, cout, 1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x), inplace=True)
        out = self.conv2(F.relu(self.bn2(self.conv1(o)), inplace=True))
        sc = x if self.convShortcut is None else self.convShortcut(o)
        return out + sc


class WideStage(nn.Module):
    """``n`` wide blocks; the first one changes channels/stride."""

    def __init__(self, n: int, cin: int, cout: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout,
                                               stride if i == 0 else 1, norm) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` encoder: [0,1] NCHW images -> ``feature_dim`` features."""

    def __init__(self, depth: int = 28, widen: int = 10, width: int = 64,
                 blocks: Sequence[int] | None = None, norm: NormFactory = plain_bn,
                 normalize: str = "none") -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10 or widen <= 0 or width <= 0:
            raise ConfigError(f"WRN needs depth = 6n+4 >= 10, widen > 0 and width > 0, got "
                              f"depth={depth} widen={widen} width={width}")
        stages = list(blocks) if blocks else [(depth - 4) // 6] * 3
        if any(b <= 0 for b in stages):
            raise ConfigError(f"WRN blocks must be > 0 per stage, got {stages}")
        self._spec = {"depth": depth, "widen": widen, "width": width,
                      "blocks": list(blocks) if blocks else None, "normalize": normalize}
        base = max(1, 16 * width // 64)
        self.normalize = build_normalize(normalize)
        self.conv1 = conv3x3(3, base)
        cin = base
        self.stage_names: list[str] = []
        for i, n in enumerate(stages):
            cout = base * widen * 2 ** i
            name = f"block{i + 1}"
            self.add_module(name, WideStage(n, cin, cout, 1 if i == 0 else 2, norm))
            self.stage_names.append(name)
            cin = cout
        self.bn1 = norm(cin, 2)
        self.feature_dim = cin
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.normalize(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = F.relu(self.bn1(x), inplace=True)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def rebuild(self, norm: NormFactory) -> WideResNet:
        """The same architecture with another norm factory (fresh weights)."""
        return WideResNet(**self._spec, norm=norm)
