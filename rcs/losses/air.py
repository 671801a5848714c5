"""AIR: adversarial invariant regularisation (Xu et al., NeurIPS 2023), ``AIR.py:15-101``.

Inputs: ``z_nat`` [2N, d] and ``z_adv`` [2N, d] interleaved (``zi = z[0::2]``, ``zj = z[1::2]``),
``z_ori`` [N, d] the un-augmented original images through the ``normal`` BN. All are L2-normalised.
With ``d(a, b)_k = <a_k, b_k> / t`` (diagonal only) and ``sm`` a softmax over the batch index k::

    p = sm d(zi, zo)          q = sm d(zj, zo)
    cA_i = sm d(zi_adv, zi)   cA_j = sm d(zj_adv, zj)
    aO_i = sm d(zi_adv, zo)   aO_j = sm d(zj_adv, zo)
    P = aO_i * cA_i           Q = aO_j * cA_j          (element-wise, not renormalised)
    L = (1 - w) NTX(z_nat) + (1 + w) NTX(z_adv) + lambda1 * SIR + lambda2 * AIR

``variant='faithful'`` (the published code: ``F.kl_div`` given a *probability* as its input)::

    SIR = sum_k q_k (log q_k - p_k)        AIR = sum_k Q_k (log Q_k - P_k)

``variant='corrected'`` (true KLs, P and Q renormalised to distributions P^, Q^)::

    SIR = KL(q || p) = sum_k q_k (log q_k - log p_k)    AIR = KL(Q^ || P^)

``log Q`` is computed as ``log aO_j + log cA_j`` (log-softmaxes), equal to the published
``log(aO_j * cA_j)`` but without underflow. Everything runs in fp32 (P, Q ~ 1/N^2). Nothing is
detached. ACL-AIR uses w = 0; DynACL-AIR uses ``w = dynacl_weight(s)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcs.losses.ntxent import fp32, no_autocast, nt_xent

__all__ = ["air_loss", "air_terms", "AIR_VARIANTS"]

AIR_VARIANTS = ("faithful", "corrected")


def _diag_logsm(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``log softmax_k(<a_k, b_k> / t)`` over the batch index."""
    return torch.log_softmax((a * b).sum(dim=1) / t, dim=0)


def air_terms(z_nat: torch.Tensor, z_adv: torch.Tensor, z_ori: torch.Tensor,
              temperature: float = 0.5, variant: str = "faithful") -> dict[str, torch.Tensor]:
    """The four AIR terms ``{'nat', 'adv', 'sir', 'air'}`` (scalars, fp32); see module doc."""
    if variant not in AIR_VARIANTS:
        raise ValueError(f"AIR variant {variant!r} is not one of {', '.join(AIR_VARIANTS)}")
    if z_nat.shape != z_adv.shape or z_nat.shape[0] != 2 * z_ori.shape[0]:
        raise ValueError(f"AIR needs z_nat, z_adv [2N, d] and z_ori [N, d], got "
                         f"{tuple(z_nat.shape)}, {tuple(z_adv.shape)}, {tuple(z_ori.shape)}")
    t = temperature
    with no_autocast(z_nat):
        zn, za, zo = (F.normalize(fp32(z), p=2, dim=-1) for z in (z_nat, z_adv, z_ori))
        l_nat, l_adv = nt_xent(zn, t), nt_xent(za, t)
        zi, zj, zi_adv, zj_adv = zn[0::2], zn[1::2], za[0::2], za[1::2]
        log_p, log_q = _diag_logsm(zi, zo, t), _diag_logsm(zj, zo, t)
        log_big_p = _diag_logsm(zi_adv, zo, t) + _diag_logsm(zi_adv, zi, t)
        log_big_q = _diag_logsm(zj_adv, zo, t) + _diag_logsm(zj_adv, zj, t)
        if variant == "faithful":
            sir = (log_q.exp() * (log_q - log_p.exp())).sum()
            air = (log_big_q.exp() * (log_big_q - log_big_p.exp())).sum()
        else:
            sir = (log_q.exp() * (log_q - log_p)).sum()
            log_big_p = torch.log_softmax(log_big_p, dim=0)  # renormalise P, Q
            log_big_q = torch.log_softmax(log_big_q, dim=0)
            air = (log_big_q.exp() * (log_big_q - log_big_p)).sum()
    return {"nat": l_nat, "adv": l_adv, "sir": sir, "air": air}


def air_loss(z_nat: torch.Tensor, z_adv: torch.Tensor, z_ori: torch.Tensor,
             temperature: float = 0.5, w: float = 0.0, lambda1: float = 0.5,
             lambda2: float = 0.5, variant: str = "faithful") -> torch.Tensor:
    """``(1 - w) NTX(nat) + (1 + w) NTX(adv) + lambda1 SIR + lambda2 AIR`` (fp32 scalar)."""
    t = air_terms(z_nat, z_adv, z_ori, temperature, variant)
    return (1 - w) * t["nat"] + (1 + w) * t["adv"] + lambda1 * t["sir"] + lambda2 * t["air"]
