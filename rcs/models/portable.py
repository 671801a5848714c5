"""Portable weights: a plain ``state_dict`` file, a ``safetensors`` file and a JSON sidecar.

:func:`save_export` writes, for a single-BN network (an exported encoder or classifier)::

    <name>.pt             torch.save of the plain state dict (loads with weights_only=True)
    <name>.safetensors    the same tensors (the sidecar is also in its metadata, key 'rcs')
    <name>.json           the sidecar: kind, model config (architecture), BN branch, input
                          range and layout, normalisation (applied inside the network), output,
                          file names and SHA-256 of each file

:func:`build_exported` rebuilds the untrained network from the sidecar with rcs's model code and
plain BatchNorm, so loading needs only torch and rcs (or the factory of ``model.arch``)::

    meta = json.load(open("export/encoder.json"))
    net = build_exported(meta)
    net.load_state_dict(torch.load("export/encoder.pt", weights_only=True))

:func:`load_exported` does both (from either file format) and checks every key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rcs.config import ModelConfig, from_dict, to_dict
from rcs.errors import CheckpointError, ConfigError
from rcs.models.export import Classifier
from rcs.models.model import build_encoder
from rcs.models.multibn import plain_bn
from rcs.models.normalize import NORMALIZATIONS
from rcs.utils.atomic import atomic_path, atomic_write_text

EXPORT_FORMAT = "rcs-export/1"
FORMATS = ("pt", "safetensors")
KINDS = ("encoder", "classifier")


def export_meta(kind: str, model_cfg: ModelConfig, branch: str, feature_dim: int,
                num_classes: int | None = None, image_size: int | None = None,
                source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar of an exported ``kind`` (encoder | classifier) of ``model_cfg``."""
    from rcs import __version__

    if kind not in KINDS:
        raise ConfigError(f"export kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "classifier" and not num_classes:
        raise ConfigError("exporting a classifier needs its number of classes")
    mcfg = copy.deepcopy(model_cfg)
    mcfg.head = "none"
    stats = NORMALIZATIONS.get(mcfg.normalize)
    return {
        "format": EXPORT_FORMAT, "kind": kind, "arch": mcfg.arch, "model": to_dict(mcfg),
        "branch": branch, "feature_dim": int(feature_dim),
        "num_classes": int(num_classes) if kind == "classifier" else None,
        "input": {"range": [0.0, 1.0], "layout": "NCHW", "channels": 3, "dtype": "float32",
                  "image_size": image_size},
        "normalization": {"name": mcfg.normalize, "applied_inside": True,
                          "mean": list(stats[0]) if stats else None,
                          "std": list(stats[1]) if stats else None},
        "output": (f"logits [B, {num_classes}]" if kind == "classifier"
                   else f"features [B, {feature_dim}]"),
        "source": dict(source or {}), "rcs_version": __version__,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _require_safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:
        raise ConfigError("the safetensors format needs the 'safetensors' package: "
                          "pip install safetensors (or export with --format pt)") from None
    return st


def plain_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """CPU, contiguous, detached copies of ``module``'s state dict (no shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_export(module: nn.Module, out_dir: str | Path, name: str, meta: dict[str, Any],
                formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Write ``module``'s weights as ``<name>.pt`` / ``<name>.safetensors`` (``formats``) and
    the sidecar ``<name>.json`` (``meta`` plus the file names and their SHA-256), atomically.
    Returns ``{"pt": ..., "safetensors": ..., "json": ...}`` for the files written."""
    formats = list(dict.fromkeys(formats))
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"export format {f!r} is not one of {', '.join(FORMATS)}")
    if not formats:
        raise ConfigError("export needs at least one format (pt, safetensors)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = plain_state_dict(module)
    meta = dict(meta, keys=len(sd), files={}, sha256={})
    written: dict[str, Path] = {}
    if "pt" in formats:
        path = out / f"{name}.pt"
        with atomic_path(path) as tmp:
            torch.save(sd, tmp)
        written["pt"] = path
    if "safetensors" in formats:
        st = _require_safetensors()
        path = out / f"{name}.safetensors"
        with atomic_path(path) as tmp:
            st.save_file(sd, str(tmp), metadata={"rcs": json.dumps(meta, sort_keys=True)})
        written["safetensors"] = path
    for fmt, path in written.items():
        meta["files"][fmt] = path.name
        meta["sha256"][fmt] = _sha256(path)
    written["json"] = atomic_write_text(out / f"{name}.json",
                                        json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return written


def build_exported(meta: Mapping[str, Any]) -> nn.Module:
    """The untrained single-BN network described by an export sidecar, in eval mode: the
    encoder (``[0, 1]`` NCHW images -> features) or a :class:`Classifier` (-> logits)."""
    if str(meta.get("format", "")).split("/")[0] != EXPORT_FORMAT.split("/")[0]:
        raise CheckpointError(f"not an rcs export sidecar (format={meta.get('format')!r}, "
                              f"expected {EXPORT_FORMAT!r})")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"export sidecar has kind={kind!r}; expected one of {KINDS}")
    mcfg = from_dict(ModelConfig, dict(meta["model"]))
    encoder = build_encoder(mcfg, plain_bn)
    if int(getattr(encoder, "feature_dim", -1)) != int(meta["feature_dim"]):
        raise CheckpointError(f"the rebuilt {mcfg.arch} gives {encoder.feature_dim} features "
                              f"but the export has {meta['feature_dim']}")
    net: nn.Module = encoder
    if kind == "classifier":
        net = Classifier(encoder, nn.Linear(encoder.feature_dim, int(meta["num_classes"])))
    return net.eval()


def load_exported(path: str | Path, device: torch.device | str = "cpu"
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """``(network in eval mode, sidecar)`` from an export's ``.json``, ``.pt`` or
    ``.safetensors`` file (the sidecar is found beside it); every key is checked."""
    from rcs.utils.checkpoint_io import load_state_dict_strict

    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(f"export sidecar '{sidecar}' not found; `rcs export` writes it "
                              "beside the weights")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    files = meta.get("files", {})
    fmt = "safetensors" if path.suffix == ".safetensors" else (
        "pt" if path.suffix == ".pt" or "pt" in files else "safetensors")
    weights = sidecar.with_name(files.get(fmt, f"{sidecar.stem}.{fmt}"))
    if not weights.is_file():
        raise CheckpointError(f"export weights '{weights}' not found")
    if fmt == "pt":
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        sd = _require_safetensors().load_file(str(weights))
    net = build_exported(meta)
    load_state_dict_strict(net, sd, what=f"exported {meta['kind']} '{weights}'")
    return net.to(device).eval(), meta
