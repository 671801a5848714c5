"""L-inf PGD engine with a pluggable objective (Madry et al. 2018; ACL's ``PGD_contrastive``).

``pgd`` maximises ``loss_fn(x + delta)`` over ``||delta||_inf <= eps`` and ``x + delta in [0, 1]``::

    delta_0 ~ U(-eps, eps)                  (random_start; not clamped into [0, 1], as in ACL)
    delta_0 = 0.001 * N(0, 1)               (trades_start; TRADES / RCS-ImageNet style)
    delta_0 = 0                              (neither)
    delta_0 <- clamp(x + delta_0, 0, 1) - x  (only when start_clamp=True; RoCL clamps its start)
    repeat `steps` times:
        delta <- delta + alpha * sign(grad_delta loss_fn(x + delta))
        delta <- clamp(delta, -eps, eps)
        delta <- clamp(x + delta, 0, 1) - x  (only when project=True)
    return (x + delta).detach()              (clamped into [0, 1] when project=True)

``steps = 0`` returns ``x`` unchanged (no random start is applied). Gradients are taken with
``torch.autograd.grad`` with respect to delta only, so no parameter ``.grad`` is touched. The
loss is cast to fp32 (and summed if not a scalar) before the backward pass.

If ``model`` (a module or a sequence of modules) is given, the attack runs with every module in
``eval()`` mode and every parameter's ``requires_grad`` off (cheaper backward; BN running stats
untouched); each submodule's ``training`` flag and each parameter's ``requires_grad`` are restored
afterwards, also when ``loss_fn`` raises. Attacks that must run in train mode (AdvCL) pass no
model. ``loss_fn`` may be any callable ``x_adv -> loss``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["pgd", "attack_mode"]

ModelArg = nn.Module | Iterable[nn.Module] | None


def _modules(model: ModelArg) -> list[nn.Module]:
    if model is None:
        return []
    if isinstance(model, nn.Module):
        return [model]
    return list(model)


@contextlib.contextmanager
def attack_mode(model: ModelArg) -> Iterator[None]:
    """Put ``model`` in eval mode with frozen parameters; restore every flag on exit."""
    roots = _modules(model)
    modes = [(m, m.training) for r in roots for m in r.modules()]
    flags = [(p, p.requires_grad) for r in roots for p in r.parameters()]
    try:
        for r in roots:
            r.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, req in flags:
            p.requires_grad_(req)


def _start(x: torch.Tensor, eps: float, random_start: bool, trades_start: bool,
           generator: torch.Generator | None, start_clamp: bool = False) -> torch.Tensor:
    if trades_start:
        delta = 0.001 * torch.empty_like(x).normal_(generator=generator)
    elif random_start:
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:
        return torch.zeros_like(x)
    return (x + delta).clamp_(0.0, 1.0) - x if start_clamp else delta


def pgd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
        alpha: float, steps: int, random_start: bool = True,
        generator: torch.Generator | None = None, model: ModelArg = None, project: bool = True,
        trades_start: bool = False, start_clamp: bool = False) -> torch.Tensor:
    """L-inf PGD maximising ``loss_fn(x_adv)``; returns detached ``x_adv`` (see module doc).

    Args:
        loss_fn: callable ``x_adv -> loss`` (scalar, or a tensor that is summed).
        x: clean input in [0, 1] (float32/float64; lower precisions are attacked in fp32 and
            returned in their own dtype).
        eps, alpha, steps: radius, step size and number of sign-gradient steps.
        random_start: start from ``U(-eps, eps)``; ``trades_start`` overrides it with
            ``0.001 * N(0, 1)``.
        generator: torch generator on ``x``'s device for the random start (reproducible attacks).
        model: module(s) to hold in eval mode with frozen parameters during the attack.
        project: clamp ``x + delta`` into the [0, 1] pixel box after every step (the eps-ball
            projection is always applied).
        start_clamp: clamp the random start ``x + delta_0`` into [0, 1] before the first step
            (RoCL); ACL does not.
    """
    if steps < 0 or eps < 0 or alpha < 0:
        raise ValueError(f"pgd needs steps, eps, alpha >= 0, got {steps}, {eps}, {alpha}")
    out_dtype = x.dtype
    x = x.detach()
    if steps == 0:
        return x
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    with attack_mode(model), torch.enable_grad():
        delta = _start(x, eps, random_start, trades_start, generator, start_clamp)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = loss_fn(x + delta)
            loss = loss.float() if loss.dtype != torch.float64 else loss
            if loss.dim():
                loss = loss.sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + alpha * grad.sign()).clamp_(-eps, eps)
                if project:
                    delta = (x + delta).clamp_(0.0, 1.0) - x
    with torch.no_grad():
        x_adv = x + delta
        if project:
            x_adv.clamp_(0.0, 1.0)
    return x_adv.detach().to(out_dtype)
