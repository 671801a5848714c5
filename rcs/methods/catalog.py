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
                 "train.tikhonov_lambda > 0 adds the penalty to any method"),
}


def method_help() -> str:
    """One line per built-in method: ``name (reference)``."""
    return "; ".join(f"{name} ({ref})" for name, (ref, _) in CATALOG.items())
