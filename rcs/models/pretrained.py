"""Checkpoints in and out of fine-tuning: the pretrained encoder, the fine-tuned classifier.

* :func:`load_pretrained` reads an ``rcs train`` checkpoint: its resolved config and model
  weights. :func:`pretrained_model` rebuilds the multi-BN encoder from them with
  ``load_state_dict_strict`` (a missing or unexpected key is a ``CheckpointError``, never a
  silent random init as in the AIR repo's AFF loader, ``PUBLISHED_METHODS.md`` A3.4), drops the
  projection head and adds a zero-initialised linear classifier (as the published code does).
* :func:`save_classifier` writes a fine-tuned single-BN classifier atomically (weights and JSON
  metadata only, loadable with ``weights_only=True``); :func:`load_classifier` rebuilds it, and
  also accepts a supervised (SAT) pretraining checkpoint, whose own classifier it exports.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rcs.config import ModelConfig, RunConfig, from_dict, to_dict
from rcs.config.sections import upgrade_saved_config
from rcs.errors import CheckpointError
from rcs.models import Classifier, RobustModel, build_model, export_classifier
from rcs.utils.checkpoint_io import load_checkpoint, load_state_dict_strict, save_checkpoint

CLASSIFIER_KIND = "rcs-classifier"


@dataclass
class Pretrained:
    """A pretraining checkpoint: resolved config, model weights and the file it came from."""

    path: Path
    cfg: RunConfig
    state_dict: dict[str, torch.Tensor]
    complete: bool

    @property
    def method(self) -> str:
        return self.cfg.train.method

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def fingerprint(self) -> str:
        """SHA-256 of the weights (names, shapes, bytes): tells two pretrained models apart."""
        h = hashlib.sha256()
        for k in sorted(self.state_dict):
            t = self.state_dict[k].detach().cpu().contiguous().reshape(-1)
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:32]


def _config_from_json(text: str | None, path: Path) -> RunConfig:
    if not text:
        raise CheckpointError(f"checkpoint '{path}' holds no config (config_json); it was not "
                              "written by `rcs train`")
    return from_dict(RunConfig, upgrade_saved_config(json.loads(text)))


def load_pretrained(path: str | Path) -> Pretrained:
    """Read an ``rcs train`` checkpoint (CheckpointError for foreign or classifier files)."""
    path = Path(path)
    state = load_checkpoint(path)
    if state.get("kind") == CLASSIFIER_KIND:
        raise CheckpointError(f"'{path}' is a fine-tuned classifier, not a pretraining "
                              "checkpoint; evaluate it with `rcs eval --checkpoint` instead")
    if "model" not in state:
        raise CheckpointError(f"checkpoint '{path}' has no 'model' weights")
    return Pretrained(path, _config_from_json(state.get("config_json"), path), state["model"],
                      bool(state.get("complete", True)))


def _zero_linear(in_features: int, num_classes: int) -> nn.Linear:
    fc = nn.Linear(in_features, num_classes)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.zero_()
    return fc


def pretrained_model(pre: Pretrained, num_classes: int,
                     device: torch.device | str = "cpu") -> RobustModel:
    """Multi-BN encoder with the pretrained weights, no head, a zero-initialised classifier."""
    mcfg = copy.deepcopy(pre.cfg.model)
    mcfg.head, mcfg.num_classes = "none", num_classes
    model = build_model(mcfg)
    prefix = "encoder."
    enc_sd = {k[len(prefix):]: v for k, v in pre.state_dict.items() if k.startswith(prefix)}
    if not enc_sd:
        raise CheckpointError(f"checkpoint '{pre.path}' holds no encoder weights ('encoder.*')")
    load_state_dict_strict(model.encoder, enc_sd,
                           what=f"pretrained encoder of '{pre.path}'")
    model.classifier = _zero_linear(model.feature_dim, num_classes)
    return model.to(device)


def save_classifier(path: str | Path, classifier: Classifier, model_cfg: ModelConfig,
                    num_classes: int, meta: dict[str, Any]) -> Path:
    """Atomically save a single-BN classifier's weights with the config needed to rebuild it."""
    sd = {k: v.detach().cpu() for k, v in classifier.state_dict().items()}
    return save_checkpoint(path, {
        "kind": CLASSIFIER_KIND, "classifier": sd, "num_classes": int(num_classes),
        "model_config_json": json.dumps(to_dict(model_cfg)),
        "meta_json": json.dumps(meta, sort_keys=True, default=str)})


def build_classifier(model_cfg: ModelConfig, num_classes: int) -> Classifier:
    """An (untrained) single-BN classifier of ``model_cfg``'s architecture."""
    mcfg = copy.deepcopy(model_cfg)
    mcfg.head, mcfg.num_classes = "none", num_classes
    model = build_model(mcfg)
    return export_classifier(model, mcfg.bn_names[0], fc=_zero_linear(model.feature_dim,
                                                                       num_classes))


def load_classifier(path: str | Path, device: torch.device | str = "cpu"
                    ) -> tuple[Classifier, dict[str, Any]]:
    """``(classifier in eval mode, metadata)`` from a fine-tuned classifier checkpoint, or from a
    pretraining checkpoint that has a classifier (SAT: its 'pgd' branch is exported).

    The metadata holds ``num_classes``, ``model`` (config dict) and, when known, ``config``
    (the resolved run config of the fine-tuning or pretraining run) and ``mode``.
    """
    path = Path(path)
    state = load_checkpoint(path)
    if state.get("kind") == CLASSIFIER_KIND:
        mcfg = from_dict(ModelConfig, json.loads(state["model_config_json"]))
        n = int(state["num_classes"])
        clf = build_classifier(mcfg, n)
        load_state_dict_strict(clf, state["classifier"], what=f"classifier of '{path}'")
        meta = json.loads(state.get("meta_json") or "{}")
        meta.update(num_classes=n, model=to_dict(mcfg))
        return clf.to(device).eval(), meta
    pre = load_pretrained(path)
    if "classifier.weight" not in pre.state_dict:
        raise CheckpointError(
            f"'{path}' is a pretraining checkpoint without a classifier (method "
            f"{pre.method!r}); fine-tune it first: `rcs finetune --checkpoint {path}`, then "
            f"evaluate {path.parent / 'finetune' / 'slf' / 'classifier.pt'}")
    n = int(pre.state_dict["classifier.weight"].shape[0])
    mcfg = copy.deepcopy(pre.cfg.model)
    mcfg.num_classes = n
    model = build_model(mcfg, classifier=True)
    load_state_dict_strict(model, pre.state_dict, what=f"model of '{path}'")
    branch = "pgd" if "pgd" in mcfg.bn_names else mcfg.bn_names[-1]
    clf = export_classifier(model, branch)
    return clf.to(device).eval(), {"num_classes": n, "model": to_dict(mcfg),
                                   "config": to_dict(pre.cfg), "mode": "pretrained",
                                   "branch": branch}
