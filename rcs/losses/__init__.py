"""Pure loss functions of rcs (all computed in fp32 even under autocast; formulas in docstrings).

Projections of pairs are interleaved rows ``[x0_a, x0_b, x1_a, x1_b, ...]``; the positive of
row i is row ``i ^ 1``.
"""

from __future__ import annotations

from rcs.losses.acl import acl_loss, dynacl_loss, dynacl_period, dynacl_strength, dynacl_weight
from rcs.losses.advcl import advcl_loss, pseudo_label_ce, supcon_loss
from rcs.losses.ainfonce import AINFONCE_VARIANTS, ainfonce_rocl_loss
from rcs.losses.air import AIR_VARIANTS, air_loss, air_terms
from rcs.losses.byol import byol_loss, byol_loss_per_sample
from rcs.losses.ce import cross_entropy, sat_loss
from rcs.losses.clae import clae_loss, pair_rows
from rcs.losses.hcl import hard_negative_terms, hcl_loss, hcl_per_sample
from rcs.losses.ifm import ifm_loss, ifm_nt_xent_per_sample
from rcs.losses.memory import (
    adco_loss,
    adco_memory_grad,
    caco_loss,
    caco_memory_direction,
    caco_positive_index,
    memory_sgd_step,
)
from rcs.losses.mochi import MochiDraw, mochi_draw, mochi_hard_count, mochi_loss
from rcs.losses.ntxent import nt_xent, nt_xent_per_sample
from rcs.losses.rd import RD_DISTANCES, rd_distance, rd_kl, rd_kl_per_sample, rd_minmax_kl
from rcs.losses.rocl import rocl_loss, rocl_nt_xent
from rcs.losses.tikhonov import input_gradient_penalty, tikhonov_penalty
from rcs.losses.trades import trades_kl, trades_kl_per_sample, trades_loss

__all__ = [
    "AINFONCE_VARIANTS", "AIR_VARIANTS", "RD_DISTANCES", "MochiDraw", "acl_loss", "adco_loss",
    "adco_memory_grad", "advcl_loss", "ainfonce_rocl_loss", "air_loss", "air_terms",
    "byol_loss", "byol_loss_per_sample", "caco_loss", "caco_memory_direction",
    "caco_positive_index", "clae_loss", "cross_entropy", "dynacl_loss", "dynacl_period",
    "dynacl_strength", "dynacl_weight", "hard_negative_terms", "hcl_loss", "hcl_per_sample",
    "ifm_loss", "ifm_nt_xent_per_sample", "input_gradient_penalty", "memory_sgd_step",
    "mochi_draw", "mochi_hard_count", "mochi_loss", "nt_xent", "nt_xent_per_sample",
    "pair_rows", "pseudo_label_ce", "rd_distance", "rd_kl", "rd_kl_per_sample", "rd_minmax_kl",
    "rocl_loss", "rocl_nt_xent", "sat_loss", "supcon_loss", "tikhonov_penalty", "trades_kl",
    "trades_kl_per_sample", "trades_loss",
]
