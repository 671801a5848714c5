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
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rcs.errors import NotAvailableError
from rcs.utils.progress import bar

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
                        log_path: str | None = None, chunk: int = 0,
                        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """AutoAttack robust accuracy of ``model`` on ``x`` ([0, 1] NCHW) with labels ``y``.

    The images go through AutoAttack in chunks of ``chunk`` (default ``4 * batch_size``; every
    image is attacked on its own, so the chunking does not change what is measured), with a
    progress bar and, through ``log``, one line per chunk with the images done, the robust
    accuracy so far, the time spent and an estimate of the time left.

    Returns ``{'accuracy', 'clean_accuracy', 'correct', 'n', 'eps', 'norm', 'version',
    'package', 'max_perturbation', 'seconds'}``. The model is evaluated in eval mode.
    """
    cls, package = find_autoattack()
    device = torch.device(device)
    model.eval()
    run = cls.run_standard_evaluation
    reference_api = "bs" in inspect.signature(run).parameters  # else pyautoattack's API
    if reference_api:
        adversary = cls(model, norm=norm, eps=eps, version=version, seed=seed,
                        device=str(device), log_path=log_path)
    else:
        adversary = cls(model, norm=norm, eps=eps, version=version, seed=seed, device=device)
    n = len(y)
    chunk = chunk or 4 * batch_size
    correct = clean = 0
    max_pert = 0.0
    t0 = time.perf_counter()
    pbar = bar(n, desc=f"autoattack ({version})", unit="img")
    for s in range(0, n, chunk):
        xc, yc = x[s:s + chunk], y[s:s + chunk]
        if reference_api:
            out = adversary.run_standard_evaluation(xc, yc, bs=batch_size)
        else:
            out = adversary.run_standard_evaluation(xc, yc, batch_size=batch_size)
        x_adv = (out[0] if isinstance(out, tuple) else out).to(x.device)
        max_pert = max(max_pert, float((x_adv - xc).abs().amax()) if len(xc) else 0.0)
        correct += _accuracy(model, x_adv, yc, batch_size, device)
        clean += _accuracy(model, xc, yc, batch_size, device)
        done = min(n, s + chunk)
        pbar.update(len(yc))
        pbar.set_postfix(robust=f"{100 * correct / done:.1f}%")
        if log is not None:
            spent = time.perf_counter() - t0
            log(f"[eval] autoattack {done}/{n} images: robust {100 * correct / done:.2f}% so "
                f"far, {spent:.0f} s spent, ~{spent / done * (n - done):.0f} s left")
    pbar.close()
    return {"accuracy": correct / max(n, 1), "clean_accuracy": clean / max(n, 1),
            "correct": correct, "n": n, "eps": eps, "norm": norm, "version": version,
            "package": package, "max_perturbation": max_pert,
            "seconds": time.perf_counter() - t0}
