"""Run the requested evaluations on a classifier and collect one JSON-ready dict.

``evaluate(model, test_set, eval_cfg, attacks)`` runs, in order, any of:

* ``clean``       - accuracy on the test split (SA);
* ``pgd20``       - accuracy under ``eval.pgd`` (PGD-20, eps 8/255, alpha 2/255, random start);
* ``autoattack``  - AutoAttack ``eval.autoattack_version`` L-inf at ``eval.pgd.eps`` on the first
  ``eval.autoattack_n_ex`` test images; when the package is missing the entry holds
  ``{"available": false, "message": ...}`` and nothing fails;
* ``corruptions`` - CIFAR-10-C style accuracy from ``eval.corruptions_root``;
* ``smoothing``   - certified L2 accuracy of the Gaussian-smoothed classifier at
  ``eval.smoothing_radii`` (Cohen et al.'s CERTIFY, ``rcs.evaluate.smoothing``).

Before attacking, the checks AutoAttack's authors recommend are made on one batch: the model
must output logits (not probabilities), inputs are in [0, 1], eps is 8/255 rather than 0.031.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from rcs.config.schema import EvalConfig
from rcs.data import ImageDataset, to_float
from rcs.errors import ConfigError, NotAvailableError
from rcs.evaluate.accuracy import clean_accuracy, pgd_accuracy
from rcs.evaluate.autoattack import autoattack_accuracy
from rcs.evaluate.corruptions import corruption_accuracy
from rcs.evaluate.smoothing import certified_accuracy

ATTACKS = ("clean", "pgd20", "autoattack", "corruptions", "smoothing")


def sanity_check(model: nn.Module, x: torch.Tensor, eps: float) -> list[str]:
    """Warnings about common evaluation mistakes (also emitted with ``warnings.warn``)."""
    out: list[str] = []
    if model.training:
        out.append("the model is in train mode; evaluating in eval mode")
    if x.min() < 0 or x.max() > 1:
        out.append("inputs are outside [0, 1]; the classifier expects [0, 1] pixels")
    with torch.no_grad():
        logits = model.eval()(x)
    if (logits.min() >= 0 and logits.max() <= 1
            and torch.allclose(logits.sum(-1), torch.ones(len(x), device=x.device), atol=1e-4)):
        out.append("the model outputs look like probabilities; attacks need logits")
    if eps > 0 and abs(eps - 0.031) < 1e-9:
        out.append("eps=0.031 is not 8/255=0.031373; published numbers use 8/255")
    for msg in out:
        warnings.warn(msg, stacklevel=2)
    return out


def evaluate(model: nn.Module, test_set: ImageDataset, cfg: EvalConfig,
             attacks: list[str] | None = None, device: torch.device | str = "cpu",
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Results of ``attacks`` (default ``cfg.attacks``) as ``{attack: {...}, 'seconds': {...}}``."""
    attacks = list(attacks or cfg.attacks)
    for a in attacks:
        if a not in ATTACKS:
            raise ConfigError(f"unknown evaluation {a!r}; choose from {', '.join(ATTACKS)}")
    device = torch.device(device)
    model = model.to(device).eval()
    results: dict[str, Any] = {"dataset": test_set.name, "n_test": len(test_set), "seconds": {}}
    if len(test_set) and any(a in ("clean", "pgd20", "autoattack") for a in attacks):
        x0, _ = test_set.get_batch(np.arange(min(len(test_set), 16)))
        results["warnings"] = sanity_check(model, to_float(x0.to(device)), cfg.pgd.eps)
    for a in attacks:
        t0 = time.perf_counter()
        if a == "clean":
            results[a] = clean_accuracy(model, test_set, cfg.batch_size, device, cfg.limit)
        elif a == "pgd20":
            results[a] = pgd_accuracy(model, test_set, cfg.pgd, cfg.batch_size, device,
                                      cfg.limit, cfg.seed)
        elif a == "autoattack":
            results[a] = _autoattack(model, test_set, cfg, device, log)
        elif a == "corruptions":
            if not cfg.corruptions_root:
                raise ConfigError("corruption evaluation needs eval.corruptions_root (a folder "
                                  "with CIFAR-10-C style <corruption>.npy + labels.npy files)")
            results[a] = corruption_accuracy(model, cfg.corruptions_root, cfg.corruptions,
                                             cfg.severities, cfg.corruptions_n_ex,
                                             cfg.batch_size, device)
        elif a == "smoothing":
            results[a] = certified_accuracy(
                model, test_set, cfg.smoothing_sigma, cfg.smoothing_n0, cfg.smoothing_n,
                cfg.smoothing_alpha, list(cfg.smoothing_radii), cfg.smoothing_n_ex,
                cfg.smoothing_batch, device, cfg.seed)
        results["seconds"][a] = time.perf_counter() - t0
        acc = results[a].get("accuracy")
        if a == "smoothing":
            per_r = ", ".join(f"r={r}: {100 * v:.1f}%"
                              for r, v in results[a]["certified_accuracy"].items())
            log(f"[eval] smoothing (sigma {cfg.smoothing_sigma}): certified accuracy {per_r}")
        elif acc is not None:
            log(f"[eval] {a}: accuracy {100 * acc:.2f}%")
    return results


def _autoattack(model: nn.Module, test_set: ImageDataset, cfg: EvalConfig,
                device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    n = len(test_set) if not cfg.autoattack_n_ex else min(cfg.autoattack_n_ex, len(test_set))
    x, y = test_set.get_batch(np.arange(n))
    try:
        return autoattack_accuracy(model, to_float(x), y, eps=cfg.pgd.eps,
                                   version=cfg.autoattack_version,
                                   batch_size=min(cfg.batch_size, 128) if n else 1,
                                   device=device, seed=cfg.seed, log=log)
    except NotAvailableError as e:
        log(f"[eval] autoattack skipped: {e}")
        return {"available": False, "message": str(e)}


def headline(results: dict[str, Any]) -> dict[str, float | None]:
    """``{'SA', 'RA_pgd20', 'RA_autoattack', 'CA'}`` in percent (None where not evaluated)."""
    def pct(key: str) -> float | None:
        v = results.get(key, {})
        acc = v.get("accuracy") if isinstance(v, dict) else None
        return None if acc is None or (isinstance(acc, float) and math.isnan(acc)) \
            else 100.0 * acc
    return {"SA": pct("clean"), "RA_pgd20": pct("pgd20"), "RA_autoattack": pct("autoattack"),
            "CA": pct("corruptions")}
