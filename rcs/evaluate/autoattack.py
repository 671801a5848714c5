"""Bridge to the AutoAttack package (Croce & Hein, ICML 2020); AutoAttack is not re-implemented.

``AutoAttack(model, norm='Linf', eps=8/255, version='standard')`` runs APGD-CE, APGD-T, FAB-T and
Square on the points still classified correctly, then the robust accuracy is recomputed here as
``mean_b [argmax model(x_adv_b) == y_b]`` (points AutoAttack never broke come back unchanged).

Two distributions of the same code are supported; the first one found is used:

* ``autoattack`` - the reference repository (``pip install git+https://github.com/fra31/auto-attack``):
  ``AutoAttack(model, norm, eps, version, seed, device, log_path)``,
  ``run_standard_evaluation(x, y, bs=...) -> x_adv``;
* ``pyautoattack`` - its PyPI packaging (``pip install 'rcs-toolkit[autoattack]'``), with
  keyword-only arguments and ``run_standard_evaluation(x, y, batch_size=...) -> (x_adv, y_adv)``.

When neither is installed :func:`autoattack_accuracy` raises ``NotAvailableError`` with the
install command; ``rcs eval`` records that message instead of failing.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from rcs.errors import NotAvailableError

PACKAGES = ("autoattack", "pyautoattack")
INSTALL_HINT = ("AutoAttack is not installed: `pip install 'rcs-toolkit[autoattack]'` (PyPI "
                "package pyautoattack) or `pip install git+https://github.com/fra31/auto-attack`")


def find_autoattack() -> tuple[Any, str]:
    """``(AutoAttack class, package name)``; ``NotAvailableError`` when none is installed."""
    for name in PACKAGES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "AutoAttack"):
            return mod.AutoAttack, name
    raise NotAvailableError(INSTALL_HINT)


def autoattack_available() -> bool:
    try:
        find_autoattack()
    except NotAvailableError:
        return False
    return True


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              device: torch.device) -> int:
    correct = 0
    for s in range(0, len(x), batch_size):
        xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct


def autoattack_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
                        norm: str = "Linf", version: str = "standard", batch_size: int = 128,
                        device: torch.device | str = "cpu", seed: int = 0,
                        log_path: str | None = None) -> dict[str, Any]:
    """AutoAttack robust accuracy of ``model`` on ``x`` ([0, 1] NCHW) with labels ``y``.

    Returns ``{'accuracy', 'clean_accuracy', 'correct', 'n', 'eps', 'norm', 'version',
    'package', 'max_perturbation'}``. The model is evaluated in eval mode.
    """
    cls, package = find_autoattack()
    device = torch.device(device)
    model.eval()
    run = cls.run_standard_evaluation
    params = inspect.signature(run).parameters
    if "bs" in params:  # the reference repository's API
        adversary = cls(model, norm=norm, eps=eps, version=version, seed=seed,
                        device=str(device), log_path=log_path)
        out = adversary.run_standard_evaluation(x, y, bs=batch_size)
    else:  # pyautoattack: keyword-only arguments, returns (x_adv, y_adv)
        adversary = cls(model, norm=norm, eps=eps, version=version, seed=seed, device=device)
        out = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    x_adv = out[0] if isinstance(out, tuple) else out
    x_adv = x_adv.to(x.device)
    max_pert = float((x_adv - x).abs().amax()) if len(x) else 0.0
    correct = _accuracy(model, x_adv, y, batch_size, device)
    clean = _accuracy(model, x, y, batch_size, device)
    n = len(y)
    return {"accuracy": correct / max(n, 1), "clean_accuracy": clean / max(n, 1),
            "correct": correct, "n": n, "eps": eps, "norm": norm, "version": version,
            "package": package, "max_perturbation": max_pert}
