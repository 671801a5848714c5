"""``rcs export``: portable weights of a pretrained encoder or a fine-tuned classifier.

Reads an ``rcs train`` checkpoint (multi-BN; the chosen BN branch is exported) or a fine-tuned
``classifier.pt`` (already single-BN; its branch is recorded in it) and writes the plain
state dict, safetensors and JSON sidecar of :func:`rcs.models.portable.save_export`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from rcs.errors import CheckpointError, ConfigError
from rcs.models import build_model, export_classifier, export_encoder
from rcs.models.portable import FORMATS, export_meta, save_export
from rcs.models.pretrained import CLASSIFIER_KIND, load_classifier, load_pretrained
from rcs.utils.checkpoint_io import load_checkpoint, load_state_dict_strict


def default_branch(names: Iterable[str]) -> str:
    """``pgd`` when the model has it (the adversarial branch fine-tuning uses), else the last."""
    names = list(names)
    return "pgd" if "pgd" in names else names[-1]


def _from_pretraining(path: Path, what: str, branch: str | None
                      ) -> tuple[nn.Module, dict[str, Any]]:
    pre = load_pretrained(path)
    names = list(pre.cfg.model.bn_names)
    branch = branch or default_branch(names)
    if branch not in names:
        raise ConfigError(f"--branch {branch!r} is not a BN branch of '{path}' ({names})")
    mcfg = copy.deepcopy(pre.cfg.model)
    mcfg.head = "none"
    has_clf = "classifier.weight" in pre.state_dict
    if what == "classifier" and not has_clf:
        raise CheckpointError(
            f"'{path}' is a pretraining checkpoint without a classifier (method "
            f"{pre.method!r}); export its encoder (--what encoder), or fine-tune it first "
            f"(`rcs finetune --checkpoint {path}`) and export the classifier.pt that writes")
    if has_clf:
        mcfg.num_classes = int(pre.state_dict["classifier.weight"].shape[0])
    model = build_model(mcfg, classifier=has_clf)
    sd = {k: v for k, v in pre.state_dict.items() if not k.startswith("head.")}
    if not has_clf or what == "encoder":
        sd = {k: v for k, v in sd.items() if k.startswith("encoder.")}
        load_state_dict_strict(model.encoder, {k[len("encoder."):]: v for k, v in sd.items()},
                               what=f"pretrained encoder of '{path}'")
    else:
        load_state_dict_strict(model, sd, what=f"model of '{path}'")
    net = export_encoder(model, branch) if what == "encoder" else export_classifier(model, branch)
    meta = export_meta(what, mcfg, branch, model.feature_dim,
                       mcfg.num_classes if what == "classifier" else None,
                       pre.cfg.data.image_size,
                       {"checkpoint": str(path), "kind": "pretraining", "method": pre.method,
                        "selector": pre.cfg.selection.method, "complete": pre.complete})
    return net, meta


def _from_classifier(path: Path, what: str, branch: str | None
                     ) -> tuple[nn.Module, dict[str, Any]]:
    from rcs.config import ModelConfig, from_dict

    clf, info = load_classifier(path)
    recorded = info.get("branch")
    if branch is not None and recorded is not None and branch != recorded:
        raise ConfigError(f"'{path}' is a single-BN classifier exported from branch "
                          f"{recorded!r}; --branch {branch!r} is not in it (drop --branch, or "
                          "export the pretraining checkpoint instead)")
    mcfg = from_dict(ModelConfig, info["model"])
    image_size = (info.get("config") or {}).get("data", {}).get("image_size")
    net = clf if what == "classifier" else clf.encoder
    meta = export_meta(what, mcfg, recorded or branch or "?", clf.feature_dim,
                       info["num_classes"] if what == "classifier" else None, image_size,
                       {"checkpoint": str(path), "kind": "classifier",
                        "mode": info.get("mode")})
    return net, meta


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None,
                      what: str = "auto", branch: str | None = None,
                      formats: Iterable[str] = FORMATS, name: str | None = None
                      ) -> dict[str, Path]:
    """Export ``checkpoint`` (``what``: encoder | classifier | auto = classifier for a
    fine-tuned classifier.pt, encoder for a pretraining checkpoint) on BN ``branch`` (default
    ``pgd`` or the model's only branch) into ``out_dir`` (default ``<checkpoint folder>/export``)
    as ``<name>.{pt,safetensors,json}`` (``name`` defaults to ``what``)."""
    path = Path(checkpoint)
    state = load_checkpoint(path)
    is_clf = state.get("kind") == CLASSIFIER_KIND
    del state
    if what == "auto":
        what = "classifier" if is_clf else "encoder"
    if what not in ("encoder", "classifier"):
        raise ConfigError(f"--what {what!r} is not one of encoder, classifier, auto")
    net, meta = (_from_classifier if is_clf else _from_pretraining)(path, what, branch)
    out = Path(out_dir) if out_dir else path.parent / "export"
    return save_export(net, out, name or what, meta, formats)
