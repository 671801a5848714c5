"""Adversarial attacks: the L-inf PGD engine and its objectives."""

from __future__ import annotations

from rcs.attacks import objectives
from rcs.attacks.pgd import attack_mode, pgd

__all__ = ["attack_mode", "objectives", "pgd"]
