"""Competing subset selectors behind rcs's Selector protocol (see rcs.selection.base).

Importing this package registers its selectors (``rcs.selection.build_selector`` imports it).
Random and full-data selection live in ``rcs.selection.simple``; k-center, gradient-norm and
CRAIG-style facility location are added here together with the comparison harness.
"""
