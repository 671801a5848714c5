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

__all__ = ["SELECTORS", "Coreset", "SelectionContext", "Selector", "budget", "build_selector",
           "register_selector"]
