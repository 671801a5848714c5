"""Competing subset selectors behind rcs's Selector protocol (see rcs.selection.base), and the
harness that compares them with RCS at an equal budget (:mod:`baselines.compare`).

Importing this package registers its selectors (``rcs.selection.build_selector`` imports it):

==========  ===============================================================================
name        what it keeps
==========  ===============================================================================
kcenter     farthest-point (k-center) greedy on encoder features (:mod:`baselines.kcenter`)
gradnorm    largest per-sample head-gradient norm of the ACL loss (:mod:`baselines.gradnorm`)
craig       facility location on kNN-sparse sketched gradients, lazy greedy, cluster-size
            weights (:mod:`baselines.craig`, :mod:`baselines.facility`)
==========  ===============================================================================

``full`` and ``random`` (optionally class-balanced) live in ``rcs.selection.simple``.
"""

from baselines.craig import CraigSelector
from baselines.facility import SparseSimilarity, knn_similarity, lazy_greedy
from baselines.gradnorm import GradNormSelector
from baselines.kcenter import KCenterSelector, kcenter_greedy

__all__ = ["CraigSelector", "GradNormSelector", "KCenterSelector", "SparseSimilarity",
           "kcenter_greedy", "knn_similarity", "lazy_greedy"]
