"""AFF: adversarial full fine-tuning with TRADES on the dual-BN network, then export.

The whole pretrained encoder and a zero-initialised classifier are trained
(``PUBLISHED_METHODS.md`` A1.3, A3.3; ``trades_loss_dual`` of the AIR / RobustSSL code). With ``n``
= 'normal' and
``a`` = 'pgd' (``finetune.aff_dual_bn``; both 'pgd' otherwise) and ``x~ = crop_flip(x)``::

    attack (eval mode, parameters frozen):
        x_adv = argmax_{||d||_inf <= eps} sum_b KL(p(x~_b; n) || p(x~_b + d_b; a))
                10 sign steps of 2/255 from x~ + 0.001 N(0, 1), kept in [0, 1]
    loss (train mode):
        CE(logits(x~; n), y) + beta * (1/B) sum_b KL(p(x~_b; n) || p(x_adv_b; a)),  beta = 6
        (the clean softmax target is not detached, as in the reference)

After training the 'pgd' branch (``finetune.branch``) and the classifier are exported into a
single-BN :class:`Classifier`, which is what gets evaluated.
"""

from __future__ import annotations

import torch

from rcs.attacks import attack_mode, objectives, pgd
from rcs.config import RunConfig
from rcs.data import ImageDataset
from rcs.data.augment import crop_flip
from rcs.finetune.loop import FitResult, fit, fit_identity
from rcs.finetune.protocol import ModeSettings
from rcs.losses import trades_loss
from rcs.models import Classifier, RobustModel, export_classifier
from rcs.models.pretrained import Pretrained, pretrained_model


def aff_branches(cfg: RunConfig) -> tuple[str, str]:
    """(clean branch, adversarial branch) of the TRADES forwards."""
    adv = cfg.finetune.branch
    return ("normal" if cfg.finetune.aff_dual_bn else adv), adv


def aff_step(model: RobustModel, cfg: RunConfig):
    """The TRADES training step of :func:`rcs.finetune.loop.fit` (see the module doc)."""
    ft, atk = cfg.finetune, cfg.finetune.attack
    nat_bn, adv_bn = aff_branches(cfg)

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = crop_flip(x, ft.padding, generator=gen)
        with attack_mode(model), torch.no_grad():
            target = model.logits(x, nat_bn)
        x_adv = pgd(objectives.kl_trades(lambda z: model.logits(z, adv_bn), target), x,
                    atk.eps, atk.alpha, atk.steps, random_start=False, trades_start=True,
                    generator=gen, model=model)
        model.train()
        return trades_loss(model.logits(x, nat_bn), model.logits(x_adv, adv_bn), y,
                           beta=ft.trades_beta)

    return step


def finetune_aff(pre: Pretrained, cfg: RunConfig, settings: ModeSettings,
                 train_set: ImageDataset, indices, num_classes: int, device: torch.device,
                 out, resume: bool = True) -> tuple[Classifier, FitResult, RobustModel]:
    """Run AFF; returns the exported classifier, the fit record and the trained dual-BN model."""
    model = pretrained_model(pre, num_classes, device)
    nat_bn, adv_bn = aff_branches(cfg)
    for b in {nat_bn, adv_bn}:
        model.set_branch(b)  # a ConfigError now, not after an epoch, for an unknown branch
    result = fit(aff_step(model, cfg), {"model": model}, settings, train_set, indices, device,
                 out, seed=cfg.finetune.seed, min_batch=2, resume=resume,
                 identity=fit_identity(pre, cfg, train_set))
    model.eval()
    return export_classifier(model, adv_bn, fc=model.classifier), result, model
