"""SAT: supervised PGD adversarial training (Madry et al., ICLR 2018) with labels.

x_adv = PGD-K on cross-entropy (train.attack, eval mode, 'pgd' BN); L = CE(f(x_adv), y) with the
model in train mode. Uses one augmented view and the model's classifier.
"""

from __future__ import annotations

from rcs.attacks import objectives, pgd
from rcs.errors import DataError
from rcs.losses import sat_loss
from rcs.methods.base import Method, StepOutput, register_method


@register_method("sat")
class SAT(Method):
    name = "sat"
    needs_labels = True
    branch = "pgd"

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        if y is None:
            raise DataError("train.method=sat needs labels, but this dataset has none; use a "
                            "labelled split or a contrastive method (acl, dynacl, air)")
        v = augment(x, generator=generator)
        a = self.cfg.train.attack
        loss_fn = objectives.cross_entropy(lambda t: model.logits(t, self.branch), y)
        v_adv = pgd(loss_fn, v, eps=a.eps, alpha=a.alpha, steps=a.steps,
                    random_start=a.random_start, generator=generator, model=model)
        (logits,) = forward([(v_adv, self.branch, "logits")])
        loss = sat_loss(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        return StepOutput(loss, {"adv_acc": float(acc)})

    @classmethod
    def selection_loss(cls) -> str:
        return "sat"
