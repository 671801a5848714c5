"""Adapters between user models/datasets and the RCS core.

A :class:`Net` is what selection needs: ``features(x, stream)`` (encoder features of [0, 1]
images, stream ``'clean'`` or ``'adv'``), the head module whose Linear layers are ``φ``, the BN
branch name of each stream, and the modules to hold in eval mode with frozen parameters.

Accepted ``encoder`` forms (library API):

- ``encoder(x, bn)`` -- e.g. ``lambda x, bn: model.features(x, bn)`` or an ACL-style
  ``model.get_feature`` bound method; gets ``bn["clean"]`` / ``bn["adv"]`` (names);
- ``encoder(x)`` -- single-BN code, or code that routes BN itself;
- ``{"clean": fn, "adv": fn}`` -- one callable per stream (``fn(x)``).

``head`` is an ``nn.Module``: called ``head(f)``, or ``head(f, bn)`` when its ``forward`` takes
a second argument (ACL's ``proj_head.forward(x, bn_name)``); rcs multi-BN heads are routed.
Modules found in ``encoder`` (the module itself, a bound method's owner, closure variables,
``functools.partial`` arguments), the head, and an explicit ``model=`` are put in eval mode with
``requires_grad`` off during selection and restored exactly afterwards (also BN branch routing).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rcs.attacks import attack_mode, objectives, pgd
from rcs.errors import ConfigError
from rcs.selection.base import SelectionContext
from rcs.selection.per_sample import HeadFn, Objective, _takes_two_args
from rcs.utils.device import autocast, unwrap

Streams = tuple[str | None, str | None]


@dataclass
class Net:
    features: Callable[[Tensor, str], Tensor]
    head: nn.Module
    bn: Streams = ("normal", "pgd")
    modules: list[nn.Module] = field(default_factory=list)


def branch_names(model: Any) -> Streams:
    """(clean, adv) branch names of an rcs RobustModel: 'normal'/'pgd' when present."""
    names = tuple(getattr(model, "bn_names", ("normal", "pgd")))
    return ("normal" if "normal" in names else names[0], "pgd" if "pgd" in names else names[-1])


def net_from_model(model: Any, kind: str = "acl") -> Net:
    """A Net over an rcs ``RobustModel`` (``features(x, bn)``, ``head``, ``classifier``);
    DDP / DataParallel / ``torch.compile`` wrappers are looked through."""
    model = unwrap(model)
    bn = branch_names(model)
    head = model.classifier if kind == "sat" else model.head
    if head is None:
        what = "a classifier (build_model(cfg, classifier=True))" if kind == "sat" else \
            "a projection head (model.head must not be 'none')"
        raise ConfigError(f"RCS selection needs {what}: its gradients are taken w.r.t. it")
    names = dict(zip(("clean", "adv"), bn))
    return Net(lambda x, s: model.features(x, names[s]), head, bn, [model])


def make_objective(kind: str, temperature: float, bn: Streams,
                   air: tuple[float, float, str] = (0.5, 0.5, "faithful")) -> Objective:
    """The per-sample objective of selection loss ``kind`` (a method's ``selection_loss()``,
    see :func:`rcs.methods.base.selection_loss_of`): ``acl`` (ACL's ½/½ streams), ``air`` (AIR
    at plain stream weights 1/1, i.e. w = 0, with ``air`` = (λ1, λ2, variant)) or ``sat``."""
    if kind == "sat":
        return Objective("sat", temperature, bn)
    if kind == "air":
        lam1, lam2, variant = air
        return Objective("air", temperature, bn, 1.0, 1.0, lam1, lam2, variant)
    if kind == "acl":
        return Objective("acl", temperature, bn)
    raise ConfigError(f"selection loss {kind!r} is not one of acl, air, sat")


def _modules_in(obj: Any, depth: int = 0) -> list[nn.Module]:
    if isinstance(obj, nn.Module):
        return [obj]
    if depth > 2 or obj is None:
        return []
    found: list[nn.Module] = []
    if isinstance(getattr(obj, "__self__", None), nn.Module):
        found.append(obj.__self__)
    if isinstance(obj, functools.partial):
        for a in (obj.func, *obj.args, *obj.keywords.values()):
            found += _modules_in(a, depth + 1)
    for cell in getattr(obj, "__closure__", None) or ():
        with contextlib.suppress(ValueError):
            found += _modules_in(cell.cell_contents, depth + 1)
    code, glb = getattr(obj, "__code__", None), getattr(obj, "__globals__", None)
    if code is not None and isinstance(glb, dict):  # module-level names a lambda refers to
        for name in code.co_names:
            if isinstance(glb.get(name), nn.Module):
                found.append(glb[name])
    if isinstance(obj, dict):
        for v in obj.values():
            found += _modules_in(v, depth + 1)
    return found


def net_from_callables(encoder: Any, head: nn.Module, bn: dict[str, Any] | None = None,
                       model: nn.Module | None = None) -> Net:
    """A Net over user callables (see the module docstring for the accepted forms)."""
    if not isinstance(head, nn.Module):
        raise ConfigError("RCSSelector(head=...) must be an nn.Module (its Linear layers are "
                          "the parameters RCS differentiates)")
    bn = dict(bn or {})
    unknown = set(bn) - {"clean", "adv"}
    if unknown:
        raise ConfigError(f"bn keys {sorted(unknown)} are not 'clean'/'adv'")
    names = {"clean": bn.get("clean"), "adv": bn.get("adv")}
    if isinstance(encoder, dict):
        if set(encoder) != {"clean", "adv"}:
            raise ConfigError("encoder as a dict needs exactly the keys 'clean' and 'adv'")
        features = lambda x, s: encoder[s](x)  # noqa: E731
    elif not callable(encoder):
        raise ConfigError("RCSSelector(encoder=...) must be callable or a dict of callables")
    elif _takes_two_args(encoder) and any(v is not None for v in names.values()):
        features = lambda x, s: encoder(x, names[s])  # noqa: E731
    else:
        features = lambda x, s: encoder(x)  # noqa: E731
    mods = _modules_in(encoder) + [head] + ([model] if model is not None else [])
    uniq = list({id(m): m for m in mods}.values())
    return Net(features, head, (names["clean"], names["adv"]), uniq)


@contextlib.contextmanager
def frozen(modules: list[nn.Module]) -> Iterator[None]:
    """Eval mode, parameters frozen, multi-BN routing restored on exit (the model is unchanged)."""
    active = [(m, m.active) for r in modules for m in r.modules() if hasattr(m, "active")]
    try:
        with attack_mode(modules):
            yield
    finally:
        for m, a in active:
            m.active = a


ITEM_FORMATS = ("an image: CHW tensor, HWC uint8 array or PIL image; a stack of augmented views "
                "[V, C, H, W] (e.g. the ACL scripts' torch.stack([view1, view2])); or a tuple "
                "(one of those, label)")


def _as_chw(img: Any) -> Tensor:
    """One dataset image as a ``[C, H, W]`` (or ``[V, C, H, W]`` stacked views) tensor."""
    if hasattr(img, "mode") and hasattr(img, "size") and not isinstance(img, (Tensor,
                                                                               np.ndarray)):
        img = np.asarray(img.convert("RGB"))  # a PIL image
    t = torch.as_tensor(np.ascontiguousarray(img) if isinstance(img, np.ndarray) else img)
    if t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)  # HWC -> CHW
    if t.ndim not in (3, 4) or t.shape[-3] not in (1, 3):
        raise ConfigError(f"dataset item of shape {tuple(t.shape)} is not an image; RCS "
                          f"expects items that are {ITEM_FORMATS}")
    return t


class TensorView:
    """``get_batch(idx)`` over a torch Dataset or a tensor. Items may be images (tensor, uint8
    array or PIL), stacks of pre-augmented views, or ``(image, label)`` tuples; a batch is
    ``[B, C, H, W]`` or, for stacked views, ``[B, V, C, H, W]``."""

    def __init__(self, data: Any):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def get_batch(self, idx: np.ndarray) -> tuple[Tensor, Tensor | None]:
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.data, Tensor):
            return check_pixels(self.data[torch.from_numpy(idx)], idx), None
        items = [self.data[int(i)] for i in idx]
        labelled = isinstance(items[0], (tuple, list))
        imgs = [_as_chw(it[0] if labelled else it) for it in items]
        if len({tuple(t.shape) for t in imgs}) > 1:
            raise ConfigError("dataset items have different shapes "
                              f"({sorted({tuple(t.shape) for t in imgs})[:3]}); RCS needs "
                              "same-size images (resize or crop them in the dataset)")
        y = torch.as_tensor([int(it[1]) for it in items], dtype=torch.long) if labelled \
            else None
        return check_pixels(torch.stack(imgs), idx), y


def check_pixels(x: Tensor, idx: np.ndarray) -> Tensor:
    """Float images must be finite and in [0, 1] (the attack's eps and the augmentation are in
    that scale); uint8 images are scaled by RCS itself."""
    if not x.is_floating_point() or x.numel() == 0:
        return x
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bad.any():
        ids = idx[bad.cpu().numpy()][:5].tolist()
        raise ConfigError(f"dataset items {ids} have NaN or infinite pixels; RCS cannot rank "
                          "them. Clean or drop those images (e.g. torch.nan_to_num) before "
                          "select()")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ConfigError(
            f"dataset items are float images with values in [{lo:.4g}, {hi:.4g}]; images must "
            "be in [0, 1]: " + ("divide them by 255 (or give uint8 images)" if hi > 1.5 and
                                lo >= 0 else "remove the Normalize(mean, std) from the dataset "
                                "and normalise inside the encoder") + " (eps and the "
            "augmentation act on [0, 1] pixels)")
    return x


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float in (0, 1], or a ConfigError naming the argument."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer,
                                                               np.floating)):
        raise ConfigError(f"fraction={fraction!r} must be a number in (0, 1], e.g. "
                          "fraction=0.2 (not a string)")
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"fraction={fraction!r} must be in (0, 1] (e.g. 0.2 keeps 20%)")
    return float(fraction)


def first_view(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` images: the batch itself, or view 0 of a ``[B, V, C, H, W]`` batch."""
    return x[:, 0] if x.ndim == 5 else x


class ConcatView:
    """Train then validation dataset as one index space (validation ids follow the train ids)."""

    def __init__(self, train: Any, val: Any):
        self.train, self.val, self.n = train, val, len(train)

    def __len__(self) -> int:
        return self.n + len(self.val)

    def fingerprint(self) -> str | None:
        fp = getattr(self.train, "fingerprint", None)
        return fp() if callable(fp) else None

    def get_batch(self, idx: np.ndarray) -> tuple[Tensor, Tensor | None]:
        idx = np.asarray(idx, dtype=np.int64)
        if np.all(idx < self.n):
            return self.train.get_batch(idx)
        if np.all(idx >= self.n):
            return self.val.get_batch(idx - self.n)
        raise ValueError("a batch mixes training and validation images")


def as_batch_source(data: Any) -> Any:
    """The dataset itself when it has ``get_batch`` (rcs ImageDataset); a uint8 NHWC numpy array
    becomes an ImageDataset; anything else (torch Dataset, NCHW tensor) a TensorView."""
    if hasattr(data, "get_batch"):
        return data
    if isinstance(data, np.ndarray) and data.ndim == 4 and data.shape[-1] == 3:
        from rcs.data import ImageDataset
        return ImageDataset(data)
    return TensorView(data)


def attacked_features(net: Net, obj: Objective, head: HeadFn, x: Tensor, y: Tensor | None,
                      augment: Callable, eps: float, steps: int,
                      gens: tuple[torch.Generator, torch.Generator], amp: str = "auto") -> Tensor:
    """Feature rows ``[b, V, D]`` of one candidate batch (layout ``obj.views``).

    ACL/AIR: two augmented views (rows interleaved a0 b0 a1 b1 ...), a contrastive PGD attack of
    ``steps`` steps (``alpha = 1.25·eps/steps``: 2/255 for 5 steps, 10/255 for 1, as published)
    through encoder + head on the adversarial branch, then features without grad: clean views on
    the clean branch, adversarial views on the adversarial one (AIR adds the un-augmented image on
    the clean branch). SAT: one view, a cross-entropy PGD with the labels, adversarial features.
    ``gens`` = (CPU generator for the augmentation, device generator for the random start).
    A batch of stacked views ``[b, V, C, H, W]`` (a dataset that augments itself) is used as it
    is: views 0 and 1 (SAT: view 0), no augmentation.
    """
    from rcs.data import to_float
    b, alpha = x.shape[0], 1.25 * eps / max(1, steps)
    views = x.ndim == 5  # pre-augmented views from the dataset: used as they are
    if views and (x.shape[1] < 2 and obj.kind != "sat" or obj.kind == "air"):
        raise ConfigError(f"a dataset of stacked views [B, V, C, H, W] = {tuple(x.shape)} "
                          + ("cannot give AIR its un-augmented image: use a dataset of single "
                             "images (RCS augments them)" if obj.kind == "air" else
                             "needs V >= 2 views for the contrastive loss"))
    adv_fn = lambda xa: head(head.params, net.features(xa, "adv"), net.bn[1])  # noqa: E731
    if obj.kind == "sat":
        if y is None:
            raise ConfigError("RCS with method sat needs labelled candidates")
        xv = to_float(x[:, 0]) if views else augment(x, gens[0])
        loss_fn = objectives.cross_entropy(adv_fn, y)
    else:
        xa, xb = ((to_float(x[:, 0]), to_float(x[:, 1])) if views
                  else (augment(x, gens[0]), augment(x, gens[0])))
        xv = torch.stack([xa, xb], 1).flatten(0, 1)
        loss_fn = objectives.contrastive(adv_fn, obj.temperature)
    with autocast(x.device, amp):
        x_adv = pgd(loss_fn, xv, eps, alpha, steps, True, gens[1])
        with torch.no_grad():
            f_adv = net.features(x_adv, "adv").float()
            if obj.kind == "sat":
                parts = [f_adv.view(b, 1, -1)]
            else:
                f_nat = net.features(xv, "clean").float()
                parts = [f_nat.view(b, 2, -1), f_adv.view(b, 2, -1)]
            if obj.kind == "air":
                parts.append(net.features(to_float(x), "clean").float().view(b, 1, -1))
    return torch.cat(parts, dim=1)


def _is_index_list(val: Any) -> bool:
    """Validation given as indices (1-D integers) rather than as a dataset."""
    if isinstance(val, (list, tuple, range)):
        return all(isinstance(v, (int, np.integer)) for v in val)
    if isinstance(val, torch.Tensor):
        return val.ndim == 1 and not val.dtype.is_floating_point
    if isinstance(val, np.ndarray):
        return val.ndim == 1 and np.issubdtype(val.dtype, np.integer)
    return False


def library_context(data: Any, val: Any, fraction: float, seed: int, net: Net,
                    device: Any = None, augment: Any = None, cfg: Any = None
                    ) -> SelectionContext:
    """A SelectionContext for ``select(train, val)``.

    ``val``: indices into ``train`` (the rest are candidates), a separate dataset (every train
    image is a candidate; coreset indices refer to ``train``), or None (1% of ``train`` held out
    with ``rcs.data.train_val_split(n, 0.01, seed)``). The device defaults to the head's.
    """
    fraction = check_fraction(fraction)
    if val is not None and val is data:
        raise ConfigError("select(data, val): val is the training dataset itself, so validation "
                          "images would also be candidates; pass validation indices into data "
                          "(val=[...]), a separate dataset, or val=None (1% held out)")
    train = as_batch_source(data)
    n = len(train)
    if n == 0:
        raise ConfigError("select(data, ...): the training dataset is empty; pass the images "
                          "to select from")
    if val is None:
        from rcs.data import train_val_split
        cand, val_idx = train_val_split(n, 0.01, seed)
        ds = train
    elif _is_index_list(val):
        val_idx = np.asarray(val, dtype=np.int64).reshape(-1)
        if len(val_idx) and (val_idx.min() < 0 or val_idx.max() >= n):
            bad = val_idx[(val_idx < 0) | (val_idx >= n)]
            raise ConfigError(f"select(data, val): validation indices {bad[:5].tolist()} are "
                              f"outside the training dataset (0..{n - 1}); pass indices into "
                              "data, or the validation images as a separate dataset")
        cand, ds = np.setdiff1d(np.arange(n), val_idx), train
        if len(cand) == 0:
            raise ConfigError(f"select(data, val): the validation indices cover all {n} "
                              "training images, leaving no candidate to select; hold out fewer "
                              "(val=None holds out 1%)")
    else:
        vsrc = as_batch_source(val)
        ds, val_idx = ConcatView(train, vsrc), n + np.arange(len(val))
        cand = np.arange(n)
        if len(val):
            a, b = train.get_batch(np.array([0]))[0], vsrc.get_batch(np.array([0]))[0]
            if tuple(a.shape[-3:]) != tuple(b.shape[-3:]):
                raise ConfigError(f"select(data, val): training images are {tuple(a.shape[-3:])}"
                                  f" but validation images {tuple(b.shape[-3:])}; give both "
                                  "the same size")
    if device is None:
        p = next(iter(net.head.parameters()), None)
        device = p.device if p is not None else "cpu"
    return SelectionContext(ds, cand, val_idx, fraction, seed, None, augment,
                            torch.device(device), cfg)
