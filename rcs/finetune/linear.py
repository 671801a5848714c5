"""SLF and ALF: a linear head on the frozen, exported single-BN encoder (RobustSSL protocol).

Both export the pretrained encoder's ``finetune.branch`` BN branch (default 'pgd', as every
ACL-family code base does) into a single-BN :class:`Classifier` with a zero-initialised ``fc``.
The encoder stays in eval mode (BN running statistics frozen) with ``requires_grad`` off; only
``fc`` is trained, with SGD on::

    SLF:  CE(fc(f(x~)), y)                 x~ = crop_flip(x) (+ N(0, σ²) noise when
                                           finetune.noise_sigma = σ > 0: randomized smoothing)
    ALF:  CE(fc(f(x_adv)), y)              x_adv = PGD-10 of CE(classifier(.), y) from x~
                                           (eps 8/255, step 2/255, U(-eps, eps) start, against
                                           the whole classifier - frozen encoder + current fc -
                                           in eval mode)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.attacks import objectives, pgd
from rcs.config import RunConfig
from rcs.data import ImageDataset
from rcs.data.augment import crop_flip
from rcs.finetune.loop import FitResult, fit, fit_identity
from rcs.finetune.protocol import ModeSettings
from rcs.models import Classifier, export_classifier
from rcs.models.pretrained import Pretrained, pretrained_model


def linear_classifier(pre: Pretrained, branch: str, num_classes: int,
                      device: torch.device) -> Classifier:
    """Exported single-BN encoder on ``branch`` (frozen, eval) + zero-initialised trainable fc."""
    model = pretrained_model(pre, num_classes, device)
    clf = export_classifier(model, branch, fc=model.classifier)
    for p in clf.encoder.parameters():
        p.requires_grad_(False)
    return clf.eval()


def linear_step(clf: Classifier, cfg: RunConfig, adversarial: bool):
    """The SLF (``adversarial=False``) or ALF training step for :func:`rcs.finetune.loop.fit`."""
    ft = cfg.finetune
    atk = ft.attack

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = crop_flip(x, ft.padding, generator=gen)
        if ft.noise_sigma > 0:  # Gaussian augmentation: the base classifier of smoothing
            x = x + ft.noise_sigma * torch.randn(x.shape, generator=gen, device=x.device,
                                                 dtype=x.dtype)
        if adversarial:
            x = pgd(objectives.cross_entropy(clf, y), x, atk.eps, atk.alpha, atk.steps,
                    random_start=atk.random_start, generator=gen, model=clf)
        clf.eval()  # the encoder's BN stays frozen (fc has no train/eval difference)
        with torch.no_grad():
            f = clf.encoder(x)
        return F.cross_entropy(clf.fc(f), y)

    return step


def finetune_linear(pre: Pretrained, cfg: RunConfig, settings: ModeSettings,
                    train_set: ImageDataset, indices, num_classes: int, device: torch.device,
                    out, resume: bool = True) -> tuple[Classifier, FitResult]:
    """Run SLF (``settings.mode == 'slf'``) or ALF; returns the classifier and the fit record."""
    clf = linear_classifier(pre, cfg.finetune.branch, num_classes, device)
    step = linear_step(clf, cfg, adversarial=settings.mode == "alf")
    result = fit(step, {"fc": clf.fc}, settings, train_set, indices, device, out,
                 seed=cfg.finetune.seed, resume=resume,
                 identity=fit_identity(pre, cfg, train_set))
    return clf.eval(), result
