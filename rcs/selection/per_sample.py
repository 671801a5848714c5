"""Per-sample gradients of the pretraining loss w.r.t. the head (torch.func), and set gradients.

:class:`HeadFn` holds an eval-mode deep copy of the head ``g`` (the projection head for ACL/AIR,
the classifier for SAT). Its parameters ``φ`` are the weights and biases of the head's
``nn.Linear`` layers (``scope='head'``) or of its last k ones (``'last-k'``); BN affines and
buffers stay fixed, as in the reference (PUBLISHED_METHODS.md R1.2). BN runs on running statistics
("inference-BN" gradients; PUBLISHED_METHODS.md L-D.2). The user's head is never touched.

Features are cached per sample in rows of ``V`` views (:attr:`Objective.views`), e.g. ACL:
``[f_nat_a, f_nat_b, f_adv_a, f_adv_b]``. The per-sample loss of sample ``i`` of a candidate batch
(its chunk) is the batch loss restricted to ``i``'s own terms, the other samples of the batch
held constant (their embeddings at the current ``φ``, detached):

- ACL: ``ℓ_i = ½ [ ½(l^nat_2i + l^nat_2i+1) + ½(l^adv_2i + l^adv_2i+1) ]`` with ``l_r`` the NT-Xent
  row term of row ``r`` (``rcs.losses.nt_xent_per_sample``); ``mean_i ℓ_i = ACL loss`` at ``φ``.
- AIR: ``(1-w)·nat_i + (1+w)·adv_i + λ1·B·SIR_i + λ2·B·AIR_i``, with ``SIR_i``, ``AIR_i`` the
  k = i summands of ``rcs.losses.air_terms`` (softmaxes over the batch with the other entries
  constant); ``mean_i ℓ_i = air_loss``.
- SAT: ``ℓ_i = CE(g(f_adv_i), y_i)``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from rcs.errors import ConfigError

Params = dict[str, Tensor]


def linear_param_names(head: nn.Module, scope: str = "head") -> list[str]:
    """Weights and biases of the ``nn.Linear`` layers of ``head`` (all, or the last k)."""
    lins = [name for name, m in head.named_modules() if isinstance(m, nn.Linear)]
    if not lins:
        raise ConfigError("the head has no nn.Linear layer to take selection gradients of")
    if scope != "head":
        k = int(scope.removeprefix("last-")) if scope.startswith("last-") else -1
        if not 1 <= k <= len(lins):
            raise ConfigError(f"selection.scope={scope!r}: the head has {len(lins)} linear "
                              "layers; use 'head' or 'last-<k>' with 1 <= k <= that")
        lins = lins[-k:]
    mods = dict(head.named_modules())
    names = []
    for name in lins:
        pre = f"{name}." if name else ""
        names.append(pre + "weight")
        if mods[name].bias is not None:
            names.append(pre + "bias")
    return names


def _takes_two_args(fn: Callable) -> bool:
    try:
        ps = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    pos = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(pos) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in ps)


class HeadFn:
    """Functional eval-mode copy of a head: ``self(params, f, bn)``; ``self.params`` is ``φ'``.

    The BN branch ``bn`` is routed on rcs multi-BN layers, passed as a second argument when the
    head's ``forward`` takes one (ACL-style ``forward(x, bn_name)``), and ignored otherwise.
    """

    def __init__(self, head: nn.Module, scope: str = "head",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        self.module = copy.deepcopy(head).eval().requires_grad_(False)
        if device is not None or dtype is not None:
            self.module.to(device=device, dtype=dtype)
        self.names = linear_param_names(self.module, scope)
        named = dict(self.module.named_parameters())
        self.params: Params = {n: named[n].detach().clone() for n in self.names}
        self.frozen: Params = {n: p.detach() for n, p in named.items() if n not in self.params}
        self.frozen.update({n: b.detach() for n, b in self.module.named_buffers()})
        try:
            from rcs.models.multibn import multi_bn_layers
            self._mbns = multi_bn_layers(self.module)
        except ImportError:  # pragma: no cover - models package absent
            self._mbns = []
        self._pass_bn = not self._mbns and _takes_two_args(self.module.forward)
        self.dim = sum(p.numel() for p in self.params.values())

    def __call__(self, params: Params, f: Tensor, bn: str | None = None) -> Tensor:
        if bn is not None and self._mbns:
            for m in self._mbns:
                m.active = bn
        args = (f, bn) if self._pass_bn and bn is not None else (f,)
        return functional_call(self.module, {**self.frozen, **params}, args)

    def flatten(self, grads: Params | tuple[Tensor, ...], batched: bool = True) -> Tensor:
        """Concatenate gradients in ``names`` order: ``[B, dim]`` (or ``[dim]``)."""
        gs = [grads[n] for n in self.names] if isinstance(grads, dict) else list(grads)
        if batched:
            return torch.cat([g.reshape(g.shape[0], -1) for g in gs], dim=1)
        return torch.cat([g.reshape(-1) for g in gs])

    def step(self, grads: Params, eta: float) -> None:
        """``φ' ← φ' − η·grads`` (new tensors; applied exactly once)."""
        self.params = {n: self.params[n] - eta * grads[n].to(self.params[n]) for n in self.names}

    def state(self) -> Params:
        return {n: p.clone() for n, p in self.params.items()}


def _unit(z: Tensor) -> Tensor:
    return z / z.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def _own_rows(z: Tensor, zc: Tensor, i: Tensor, t: float) -> Tensor:
    """Mean NT-Xent row term of rows 2i, 2i+1: own unit pair ``z`` [2, d] vs constant ``zc``."""
    r = torch.arange(zc.shape[0], device=zc.device)
    self_m = torch.stack([r == 2 * i, r == 2 * i + 1])
    pos_m = torch.stack([r == 2 * i + 1, r == 2 * i])
    s_pos = (z[0] * z[1]).sum() / t
    s = torch.where(pos_m, s_pos, z @ zc.T / t).masked_fill(self_m, float("-inf"))
    return (torch.logsumexp(s, dim=1) - s_pos).mean()


def _at(vec: Tensor, i: Tensor, value: Tensor) -> Tensor:
    return torch.where(torch.arange(vec.shape[0], device=vec.device) == i, value, vec)


def _pick(vec: Tensor, i: Tensor) -> Tensor:
    return (vec * (torch.arange(vec.shape[0], device=vec.device) == i)).sum()


@dataclass
class Objective:
    """Per-sample pretraining loss. ``kind``: acl | air | sat. ``bn``: (clean, adv) branch names.

    ``w_nat``, ``w_adv``: stream weights (ACL ½, ½; AIR 1 - w, 1 + w); ``lambda1/2``, ``variant``:
    AIR (see ``rcs.losses.air``).
    """

    kind: str = "acl"
    temperature: float = 0.5
    bn: tuple[str | None, str | None] = ("normal", "pgd")
    w_nat: float = 0.5
    w_adv: float = 0.5
    lambda1: float = 0.5
    lambda2: float = 0.5
    variant: str = "faithful"

    @property
    def views(self) -> tuple[str, ...]:
        """Feature-row layout: which stream (``nat``/``adv``/``ori``) each cached view is."""
        return {"acl": ("nat", "nat", "adv", "adv"), "sat": ("adv",),
                "air": ("nat", "nat", "adv", "adv", "ori")}[self.kind]

    def context(self, head: HeadFn, params: Params, feats: Tensor, labels: Tensor) -> tuple:
        """Constants of a batch (no grad): unit embeddings (and AIR's diagonal logits)."""
        if self.kind == "sat":
            return ()
        with torch.no_grad():
            b = feats.shape[0]
            zn = _unit(head(params, feats[:, 0:2].reshape(2 * b, -1), self.bn[0]))
            za = _unit(head(params, feats[:, 2:4].reshape(2 * b, -1), self.bn[1]))
            if self.kind == "acl":
                return zn, za
            zo = _unit(head(params, feats[:, 4], self.bn[0]))
            return zn, za, zo, self._diag(zn.view(b, 2, -1), za.view(b, 2, -1), zo)

    def _diag(self, zn: Tensor, za: Tensor, zo: Tensor) -> Tensor:
        """AIR's diagonal logits [..., 6]: (zi,zo) (zj,zo) (zi',zo) (zi',zi) (zj',zo) (zj',zj)."""
        zi, zj, ai, aj = zn[..., 0, :], zn[..., 1, :], za[..., 0, :], za[..., 1, :]
        pairs = ((zi, zo), (zj, zo), (ai, zo), (ai, zi), (aj, zo), (aj, zj))
        return torch.stack([(a * c).sum(-1) for a, c in pairs], dim=-1) / self.temperature

    def loss(self, head: HeadFn, params: Params, f: Tensor, i: Tensor, y: Tensor,
             *ctx: Tensor) -> Tensor:
        """ℓ_i for one sample's feature row ``f`` [V, D] at position ``i`` of its batch."""
        t = self.temperature
        if self.kind == "sat":
            logits = head(params, f[0:1], self.bn[1])[0]
            logp = torch.log_softmax(logits, dim=-1)
            return -_pick(logp, y)
        zn = _unit(head(params, f[0:2], self.bn[0]))
        za = _unit(head(params, f[2:4], self.bn[1]))
        out = self.w_nat * _own_rows(zn, ctx[0], i, t) + self.w_adv * _own_rows(za, ctx[1], i, t)
        if self.kind == "acl":
            return out
        zo = _unit(head(params, f[4:5], self.bn[0]))[0]
        own, const = self._diag(zn, za, zo), ctx[3]
        ls = [torch.log_softmax(_at(const[:, k], i, own[k]), dim=0) for k in range(6)]
        log_p, log_q, log_bp, log_bq = ls[0], ls[1], ls[2] + ls[3], ls[4] + ls[5]
        if self.variant == "faithful":
            sir = log_q.exp() * (log_q - log_p.exp())
            air = log_bq.exp() * (log_bq - log_bp.exp())
        else:
            sir = log_q.exp() * (log_q - log_p)
            log_bp, log_bq = torch.log_softmax(log_bp, 0), torch.log_softmax(log_bq, 0)
            air = log_bq.exp() * (log_bq - log_bp)
        b = const.shape[0]
        return out + b * (self.lambda1 * _pick(sir, i) + self.lambda2 * _pick(air, i))


def per_sample_grads(obj: Objective, head: HeadFn, feats: Tensor, labels: Tensor | None = None,
                     chunk: int = 64, sketch: Callable[[Tensor], Tensor] | None = None,
                     params: Params | None = None) -> Tensor:
    """Flattened per-sample gradients ``∇φ ℓ_i`` of one batch ``feats`` [B, V, D] -> [B, dim]
    (or ``[B, sketch.dim]``: each ``chunk`` of gradients is sketched before the next is made)."""
    params = head.params if params is None else params
    b = feats.shape[0]
    labels = torch.zeros(b, dtype=torch.long, device=feats.device) if labels is None else labels
    ctx = obj.context(head, params, feats, labels)
    idx = torch.arange(b, device=feats.device)
    fn = vmap(grad(partial(obj.loss, head)), in_dims=(None, 0, 0, 0) + (None,) * len(ctx))
    out = []
    for s in range(0, b, chunk):
        g = head.flatten(fn(params, feats[s:s + chunk], idx[s:s + chunk], labels[s:s + chunk],
                            *ctx))
        out.append(sketch(g) if sketch is not None else g)
    return torch.cat(out)


def per_sample_gains(obj: Objective, head: HeadFn, feats: Tensor, direction: Params,
                     labels: Tensor | None = None, params: Params | None = None) -> Tensor:
    """Exact first-order gains ``<∇φ ℓ_i(φ), v>`` of one batch ``feats`` [B, V, D] along the
    direction ``v`` (``direction``, same keys as ``head.params``) -> [B].

    Each gain is the directional derivative ``d/dt ℓ_i(φ + t v)`` at t = 0, one forward-mode
    product (``torch.func.jvp``) per sample: exact, without forming or sketching ``∇φ ℓ_i``,
    at the cost of about two head forwards of the sample's rows.
    """
    params = head.params if params is None else params
    b = feats.shape[0]
    labels = torch.zeros(b, dtype=torch.long, device=feats.device) if labels is None else labels
    ctx = obj.context(head, params, feats, labels)
    tangent = {n: direction[n].to(params[n]) for n in params}

    def gain(f: Tensor, i: Tensor, y: Tensor) -> Tensor:
        return jvp(lambda p: obj.loss(head, p, f, i, y, *ctx), (params,), (tangent,))[1]

    return vmap(gain)(feats, torch.arange(b, device=feats.device), labels)


def unflatten(head: HeadFn, flat: Tensor) -> Params:
    """Inverse of ``head.flatten(..., batched=False)``: a flat [dim] vector as per-name tensors."""
    out, at = {}, 0
    for n in head.names:
        p = head.params[n]
        out[n] = flat[at:at + p.numel()].view_as(p)
        at += p.numel()
    return out


Group = tuple[Tensor, Tensor | None, Tensor]
"""(batch feats [B, V, D], batch labels [B] or None, positions of the picked samples [P])."""


def mean_grad(obj: Objective, head: HeadFn, groups: Iterable[Group]) -> Params:
    """Exact ``∇φ (1/P) Σ_picks ℓ_i`` at ``head.params``, with one backward pass."""
    params = {n: p.detach().requires_grad_(True) for n, p in head.params.items()}
    total, count = None, 0
    for feats, labels, pos in groups:
        b = feats.shape[0]
        labels = torch.zeros(b, dtype=torch.long, device=feats.device) if labels is None \
            else labels
        ctx = obj.context(head, head.params, feats, labels)
        nin = (None, 0, 0, 0) + (None,) * len(ctx)
        losses = vmap(partial(obj.loss, head), in_dims=nin)(params, feats[pos], pos, labels[pos],
                                                            *ctx)
        total = losses.sum() if total is None else total + losses.sum()
        count += len(pos)
    if total is None:
        raise ValueError("mean_grad needs at least one picked sample")
    grads = torch.autograd.grad(total / count, list(params.values()))
    return dict(zip(params, grads))


def loss_of(obj: Objective, head: HeadFn, feats: Tensor, labels: Tensor | None = None,
            params: Params | None = None) -> Tensor:
    """Per-sample losses ``ℓ_i`` [B] of one batch (no gradient; for checks)."""
    params = head.params if params is None else params
    b = feats.shape[0]
    labels = torch.zeros(b, dtype=torch.long, device=feats.device) if labels is None else labels
    ctx = obj.context(head, params, feats, labels)
    nin = (None, 0, 0, 0) + (None,) * len(ctx)
    with torch.no_grad():
        return vmap(partial(obj.loss, head), in_dims=nin)(
            params, feats, torch.arange(b, device=feats.device), labels, *ctx)
