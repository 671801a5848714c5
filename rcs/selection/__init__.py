"""Coreset selection: the Selector protocol and registry, Coreset files, and the RCS selector."""

from rcs.selection.base import (
    SELECTORS,
    Coreset,
    SelectionContext,
    Selector,
    budget,
    build_selector,
    register_selector,
)
from rcs.selection.rcs import RCSSelector
from rcs.selection.sampler import CoresetSampler, ReselectionSchedule

__all__ = ["SELECTORS", "Coreset", "CoresetSampler", "RCSSelector", "ReselectionSchedule",
           "SelectionContext", "Selector", "budget", "build_selector", "register_selector"]
