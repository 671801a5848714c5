"""The built-in pretraining methods: name -> (reference, loss summary). Imports nothing heavy.

Used by ``rcs train --help`` and kept equal to the registry by a test
(``tests/test_methods_catalog.py``); a method registered by user code is listed by
:func:`rcs.methods.base.method_names` but not here.
"""

from __future__ import annotations

CATALOG: dict[str, tuple[str, str]] = {
    "acl": ("Jiang et al., NeurIPS 2020",
            "½[NTX(z_nat) + NTX(z_adv)], dual BN (normal / pgd)"),
    "dynacl": ("Luo et al., ICLR 2023", "ACL with annealed augmentation and loss weight"),
    "air": ("Xu et al., NeurIPS 2023", "ACL + standard and adversarial invariant regularisation"),
    "dynacl_air": ("Xu et al., NeurIPS 2023", "AIR with the DynACL schedule"),
    "sat": ("Madry et al., ICLR 2018", "supervised PGD adversarial training (labels)"),
    "advcl": ("Fan et al., NeurIPS 2021",
              "4-view SupCon (adv, 2 aug, high-frequency) + pseudo-label CE, triple BN"),
    "rocl": ("Kim et al., NeurIPS 2020",
             "3-view NT-Xent (t1, t2, instance-wise PGD of t1) + NTX(adv, t2)/256, single BN"),
    "byorl": ("Gowal et al., ICLR 2021",
              "BYOL (predictor, EMA target) on PGD examples of the BYOL loss, single BN"),
    "tikhonov": ("double back-propagation, Drucker & LeCun 1992, on the contrastive loss",
                 "NT-Xent + (λ/2) Σ_k (‖∇_{x̃_2k-1} L‖² + ‖∇_{x̃_2k} L‖²)/2, no attack; "
                 "train.tikhonov.lam > 0 adds the penalty to any method"),
    "clae": ("Ho & Vasconcelos, NeurIPS 2020",
             "NTX(t1, t2) + α NTX(t1, FGSM/PGD(t1)) on the pair's NT-Xent, dual BN"),
    "ifm": ("Robinson et al., NeurIPS 2021",
            "(NTX + α NTX_ε)/(1+α): positive cosines -ε, negative cosines +ε, single BN"),
    "hcl": ("Robinson et al., ICLR 2021",
            "hard negatives by importance weights exp(β s/t), debiasing τ⁺, single BN"),
    "mochi": ("Kalantidis et al., NeurIPS 2020",
              "NT-Xent + negatives mixed from the N hardest (and the anchor), single BN"),
    "aacl": ("Yu et al., ECCV 2022 (A-InfoNCE hard negatives) on ACL",
             "½[HN(z_nat) + HN(z_adv)], ACL's contrastive PGD, dual BN"),
    "arocl": ("Yu et al., ECCV 2022 (A-InfoNCE) on RoCL",
              "RoCL with adversarial views as inferior positives and/or hard negatives"),
    "adco": ("Hu et al., CVPR 2021",
             "InfoNCE against a learnable memory of negatives updated by gradient ascent, "
             "momentum key encoder, single BN"),
    "caco": ("Wang et al., 2022",
             "learnable memory: cooperative positives (descent), adversarial negatives "
             "(ascent), single BN"),
    "rush": ("Pang et al., 2022",
             "SimCLR pretraining; robustness by randomized smoothing (rcs eval --attacks "
             "smoothing)"),
}


LAYERWISE_HELP = ("train.layerwise.stages=[k,...] with train.layerwise.weights=[α_k,...] adds the "
                  "layer-wise contrastive loss Σ_k α_k L_k (the method's loss on stage-k "
                  "projections) to any method with an embedding loss")


def method_help() -> str:
    """One line per built-in method: ``name (reference)``, then the layer-wise option."""
    return ("; ".join(f"{name} ({ref})" for name, (ref, _) in CATALOG.items())
            + f". Layer-wise option: {LAYERWISE_HELP}")
