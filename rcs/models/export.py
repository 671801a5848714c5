"""Export a plain single-BN network from a multi-BN ``RobustModel``.

The export rebuilds the same encoder with ordinary BatchNorm layers and copies the weights
through :func:`single_bn_state_dict` (the chosen branch's affine parameters and running
statistics; the other branches are dropped) with ``load_state_dict_strict``, so any mismatch
raises ``CheckpointError``. The projection head is dropped. The result takes [0, 1] NCHW images
and needs no extra forward arguments, so torchattacks, AutoAttack and RobustBench work on it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rcs.errors import CheckpointError, ConfigError
from rcs.models.model import RobustModel
from rcs.models.multibn import plain_bn, revert_multibn
from rcs.utils.checkpoint_io import load_state_dict_strict


class Classifier(nn.Module):
    """``forward(x) = fc(encoder(x))`` for [0, 1] NCHW images (input normalisation inside)."""

    def __init__(self, encoder: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc = fc
        self.feature_dim = int(getattr(encoder, "feature_dim", 0))

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x))


def single_bn_state_dict(multi_sd: Mapping[str, Tensor], branch: str) -> dict[str, Tensor]:
    """Map multi-BN keys ``P.bns.<branch>.T`` to ``P.T``; drop the other branches' keys.

    Keys that are not multi-BN keys are kept unchanged. Raises ``CheckpointError`` when the
    state dict has multi-BN keys but none of ``branch``, or when a mapped key collides.
    """
    out: dict[str, Tensor] = {}
    branches: set[str] = set()
    for key, value in multi_sd.items():
        parts = key.split(".")
        if len(parts) >= 3 and parts[-3] == "bns":
            branches.add(parts[-2])
            if parts[-2] != branch:
                continue
            key = ".".join(parts[:-3] + parts[-1:])
        if key in out:
            raise CheckpointError(f"state dict maps two tensors onto '{key}' (branch "
                                  f"{branch!r}); it mixes single-BN and multi-BN keys")
        out[key] = value
    if branches and branch not in branches:
        raise CheckpointError(f"state dict has no BN branch {branch!r}; it has "
                              f"{sorted(branches)}")
    return out


def _check_branch(model: nn.Module, branch: str) -> None:
    names = getattr(model, "bn_names", None)
    if names is not None and branch not in names:
        raise ConfigError(f"unknown BN branch {branch!r}; this model has branches {list(names)}")


def export_encoder(model: RobustModel | nn.Module, branch: str = "pgd") -> nn.Module:
    """Single-BN copy of ``model.encoder`` on ``branch`` (same device/dtype, eval mode).

    Encoders with ``rebuild(norm)`` (rcs's ResNet / WRN) are rebuilt with plain BatchNorm;
    any other encoder is copied and its multi-BN layers replaced by their ``branch`` BN. Either
    way the weights are loaded strictly from :func:`single_bn_state_dict`."""
    _check_branch(model, branch)
    enc = model.encoder if isinstance(model, RobustModel) else model
    if hasattr(enc, "rebuild"):  # rcs's own architectures: a fresh single-BN build
        new = enc.rebuild(plain_bn)
    else:  # any other network (e.g. convert_multibn(torchvision resnet)): keep one branch
        new = revert_multibn(copy.deepcopy(enc), branch)
    ref = next(enc.parameters(), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    sd = single_bn_state_dict(enc.state_dict(), branch)
    load_state_dict_strict(new, sd, what=f"exported encoder (branch {branch!r})")
    return new.eval()


def export_classifier(model: RobustModel, branch: str = "pgd", fc: nn.Module | None = None,
                      num_classes: int | None = None) -> Classifier:
    """Plain single-BN classifier ([0,1] NCHW -> logits) equal to ``model`` on ``branch``.

    The linear layer is, in order of preference: ``fc``; a copy of ``model.classifier`` (when
    ``num_classes`` is None or equals its size); a new zero-initialised
    ``Linear(feature_dim, num_classes)``. Returned in eval mode on the model's device/dtype.
    """
    encoder = export_encoder(model, branch)
    own = getattr(model, "classifier", None)
    if fc is None:
        if own is not None and (num_classes is None
                                or getattr(own, "out_features", None) == num_classes):
            fc = copy.deepcopy(own)
        elif num_classes is not None:
            if num_classes <= 0:
                raise ConfigError(f"num_classes={num_classes} must be > 0")
            fc = nn.Linear(encoder.feature_dim, num_classes)
            with torch.no_grad():
                fc.weight.zero_()
                fc.bias.zero_()
        else:
            raise ConfigError("export_classifier needs a classifier: pass fc=nn.Linear(...) or "
                              "num_classes=N, or build the model with classifier=True")
    in_features = getattr(fc, "in_features", encoder.feature_dim)
    if in_features != encoder.feature_dim:
        raise ConfigError(f"fc takes {in_features} inputs but the encoder gives "
                          f"{encoder.feature_dim} features")
    ref = next(encoder.parameters())
    fc = fc.to(device=ref.device, dtype=ref.dtype)
    return Classifier(encoder, fc).eval()
