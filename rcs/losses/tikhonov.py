"""Contrastive Tikhonov regularisation: an input-gradient penalty by double back-propagation.

For a batch loss L over B images with two views each (rows x~_1 ... x~_2B, the views of image k
being x~_{2k-1}, x~_{2k})::

    R   = (lambda / 2) sum_{k=1}^{B} ( ||grad_{x~_{2k-1}} L||^2 + ||grad_{x~_{2k}} L||^2 ) / 2
        = (lambda / 4) sum_{i=1}^{2B} ||grad_{x~_i} L||^2
    L_T = L + R                                          (lambda in {0.1, 1, 10})

``grad L`` is taken with ``create_graph=True`` so that ``L_T.backward()`` differentiates the
penalty too (double back-propagation, Drucker & LeCun 1992). On top of another method the sum
runs over every image row its forward pass sees (clean and adversarial views alike). The squared
norms are accumulated in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["tikhonov_penalty", "input_gradient_penalty"]


def tikhonov_penalty(grads: Sequence[torch.Tensor | None], lam: float) -> torch.Tensor:
    """``(lam / 4) sum ||g_row||^2`` over every row of every gradient tensor (None skipped)."""
    total = None
    for g in grads:
        if g is None:
            continue
        sq = g.float().pow(2).sum() if g.dtype != torch.float64 else g.pow(2).sum()
        total = sq if total is None else total + sq
    if total is None:
        raise ValueError("no input gradient: the loss does not depend on the given inputs")
    return (lam / 4.0) * total


def input_gradient_penalty(loss: torch.Tensor, inputs: Sequence[torch.Tensor], lam: float,
                           create_graph: bool = True) -> torch.Tensor:
    """``R`` of the module doc for ``loss`` and its input tensors (which require grad)."""
    grads = torch.autograd.grad(loss, list(inputs), create_graph=create_graph,
                                allow_unused=True)
    return tikhonov_penalty(grads, lam)
