"""The RD validation loss of RCS, its adversarial validation images, and its head gradient q_U.

``RD(U; φ) = (1/|U|) Σ_u dist(g_φ(f(u)), g_φ(f(ũ)))`` with ``dist`` = ``rcs.losses.rd_kl``
(``KL(softmax nat || softmax adv)``, default) or ``rd_minmax_kl`` (the published min-max scaled
variant), ``f`` the frozen encoder (natural views on the clean BN branch, adversarial on the
adversarial branch) and ``g_φ`` the head copy. ``ũ`` maximises the same RD by L∞ PGD through the
full network (``val_attack_steps``, default 3; ``eps`` 8/255; step ``alpha = 1.25·eps/steps``,
i.e. (10/255)/steps as the published small-scale code; random start seeded per
(seed, epoch, round, batch): ``start='uniform'`` draws δ0 ~ U(-eps, eps) (the published
small-scale code), ``start='trades'`` starts at x + 0.001·N(0, 1) (the published ImageNet-32
ACL and SAT code, TRADES-style)). Validation images are used un-augmented (as the reference's
``ToTensor``-only CIFAR validation set).

Natural validation features never change (encoder frozen): they are cached once. The adversarial
images are re-attacked with the updated head every ``val_reattack_every`` rounds, otherwise
reused. ``q_U = ∇φ RD`` goes through both the natural and the adversarial projection.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rcs.attacks import objectives, pgd
from rcs.losses import rd_distance
from rcs.selection.per_sample import HeadFn, Params
from rcs.utils.seed import torch_generator

START = ("uniform", "trades")
"""Random starts of the RD attack (``selection.val_attack_start``)."""

FeatureFn = Callable[[Tensor, str], Tensor]
"""``features(x, stream)`` with stream 'clean' or 'adv': encoder features of [0, 1] images."""


def rd_loss(head: HeadFn, params: Params, f_nat: Tensor, f_adv: Tensor, distance: str = "kl",
            bn: tuple[str | None, str | None] = ("normal", "pgd")) -> Tensor:
    """``RD = dist(g_φ(f_nat), g_φ(f_adv))`` over cached features (mean over samples)."""
    return rd_distance(head(params, f_nat, bn[0]), head(params, f_adv, bn[1]), distance)


def rd_grad(head: HeadFn, f_nat: Tensor, f_adv: Tensor, distance: str = "kl",
            bn: tuple[str | None, str | None] = ("normal", "pgd"), batch: int = 4096
            ) -> tuple[Tensor, float]:
    """``(∇φ RD flattened [dim], RD)`` at ``head.params``, accumulated over batches of rows.

    Both distances are means over samples of per-sample terms, so batch means weighted by their
    share of rows give the exact gradient (BN runs on running statistics).
    """
    params = {n: p.detach().requires_grad_(True) for n, p in head.params.items()}
    n = f_nat.shape[0]
    total = [torch.zeros_like(p) for p in params.values()]
    value = 0.0
    with torch.enable_grad():
        for s in range(0, n, batch):
            w = min(batch, n - s) / n
            loss = rd_loss(head, params, f_nat[s:s + batch], f_adv[s:s + batch], distance, bn)
            gs = torch.autograd.grad(loss * w, list(params.values()))
            total = [a + b for a, b in zip(total, gs)]
            value += float(loss.detach()) * w
    return head.flatten(total, batched=False), value


class RDValidation:
    """Validation images U, their cached features and attacks, and ``q_U`` for the greedy."""

    def __init__(self, features: FeatureFn, head: HeadFn, images: Tensor, distance: str = "kl",
                 bn: tuple[str | None, str | None] = ("normal", "pgd"), eps: float = 8 / 255,
                 steps: int = 3, alpha: float | None = None, batch: int = 512,
                 seed: tuple[int, ...] = (0,), start: str = "uniform"):
        if start not in START:
            raise ValueError(f"RD attack start {start!r} is not one of {', '.join(START)}")
        self.start = start
        self.features, self.head, self.distance, self.bn = features, head, distance, bn
        self.images, self.batch, self.seed = images, batch, tuple(seed)
        self.eps, self.steps = eps, steps
        self.alpha = 1.25 * eps / max(1, steps) if alpha is None else alpha
        with torch.no_grad():
            self.f_nat = torch.cat([features(images[s:s + batch], "clean")
                                    for s in range(0, len(images), batch)])
        self.f_adv: Tensor | None = None
        self.x_adv: Tensor | None = None
        self.attacks = 0

    def attack(self, round_index: int = 0) -> None:
        """Re-attack every validation image against the current head ``φ'``."""
        head, params, bn = self.head, self.head.params, self.bn
        out, xs = [], []
        for b, s in enumerate(range(0, len(self.images), self.batch)):
            x = self.images[s:s + self.batch]
            with torch.no_grad():
                z_nat = head(params, self.f_nat[s:s + self.batch], bn[0])
            loss_fn = objectives.rd(lambda xa: head(params, self.features(xa, "adv"), bn[1]),
                                    z_nat, self.distance)
            gen = torch_generator(x.device, *self.seed, round_index, b, salt=0x51ED)
            x_adv = pgd(loss_fn, x, self.eps, self.alpha, self.steps, random_start=True,
                        trades_start=self.start == "trades", generator=gen)
            xs.append(x_adv)
            with torch.no_grad():
                out.append(self.features(x_adv, "adv"))
        self.f_adv, self.x_adv = torch.cat(out), torch.cat(xs)
        self.attacks += 1

    def grad(self) -> tuple[Tensor, float]:
        """``(q_U flattened, RD)`` at the current ``φ'`` (exact, unsketched)."""
        if self.f_adv is None:
            self.attack(0)
        return rd_grad(self.head, self.f_nat, self.f_adv, self.distance, self.bn)
