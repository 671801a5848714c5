"""The step shared by the methods whose adversary acts on the features, not the images (IFM,
HCL, MoCHi) and by RUSH's plain contrastive pretraining: two clean augmented views per image
(interleaved rows), one train-mode forward through the single BN branch
(``model.bn_names: [normal]``), and the method's ``embedding_loss([z])``."""

from __future__ import annotations

import torch

from rcs.methods.base import Method, StepOutput, at_least_two, paired_views, single_branch


class CleanPairs(Method):
    """Two clean views (interleaved) in one forward through the single BN branch; the loss is
    ``embedding_loss([z])`` (IFM, HCL, MoCHi, RUSH)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn = single_branch(cfg, self.name)

    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        x = at_least_two(x)  # hard negatives need a second image (a coreset's last batch)
        self.before_loss(x.shape[0], generator)
        v = paired_views(x, augment, generator, self.cfg)
        return StepOutput(self.embedding_loss(forward([(v, self.bn, "proj")])))

    def before_loss(self, batch: int, generator: torch.Generator) -> None:
        """Hook before the forward (MoCHi draws its synthetic negatives here)."""
