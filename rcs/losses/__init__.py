"""Pure loss functions of rcs (all computed in fp32 even under autocast; formulas in docstrings).

Projections of pairs are interleaved rows ``[x0_a, x0_b, x1_a, x1_b, ...]``; the positive of
row i is row ``i ^ 1``.
"""

from __future__ import annotations

from rcs.losses.acl import acl_loss, dynacl_loss, dynacl_period, dynacl_strength, dynacl_weight
from rcs.losses.advcl import advcl_loss, pseudo_label_ce, supcon_loss
from rcs.losses.air import AIR_VARIANTS, air_loss, air_terms
from rcs.losses.byol import byol_loss, byol_loss_per_sample
from rcs.losses.ce import cross_entropy, sat_loss
from rcs.losses.ntxent import nt_xent, nt_xent_per_sample
from rcs.losses.rd import RD_DISTANCES, rd_distance, rd_kl, rd_kl_per_sample, rd_minmax_kl
from rcs.losses.rocl import rocl_loss, rocl_nt_xent
from rcs.losses.tikhonov import input_gradient_penalty, tikhonov_penalty
from rcs.losses.trades import trades_kl, trades_kl_per_sample, trades_loss

__all__ = [
    "AIR_VARIANTS", "RD_DISTANCES", "acl_loss", "advcl_loss", "air_loss", "air_terms",
    "byol_loss", "byol_loss_per_sample", "cross_entropy", "dynacl_loss", "dynacl_period",
    "dynacl_strength", "dynacl_weight", "input_gradient_penalty", "nt_xent",
    "nt_xent_per_sample", "pseudo_label_ce", "rd_distance", "rd_kl", "rd_kl_per_sample",
    "rd_minmax_kl", "rocl_loss", "rocl_nt_xent", "sat_loss", "supcon_loss", "tikhonov_penalty",
    "trades_kl", "trades_kl_per_sample", "trades_loss",
]
