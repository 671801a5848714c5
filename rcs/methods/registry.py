"""The method registry: the built-in method files, ``build_method`` and name lookups.

A method is one file that defines its settings dataclass and its :class:`~rcs.methods.base.Method`
subclass, registered with ``@register_method("name", settings=NameSettings)``, plus one line in
:data:`BUILTIN` (or, outside rcs, a module named in the ``rcs.methods`` entry-point group).
Its settings become the config section ``train.<name>``, so YAML, ``--set`` and
``rcs config keys`` see them with no other edit.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from rcs.errors import ConfigError
from rcs.methods.base import METHODS, Method, register_method, register_settings

if TYPE_CHECKING:
    from rcs.config.schema import RunConfig

__all__ = ["BUILTIN", "METHODS", "SELECTION_LOSSES", "build_method", "load_methods",
           "method_names", "register_method", "register_settings", "selection_loss_of"]

BUILTIN = ("acl", "dynacl", "air", "sat", "advcl", "rocl", "byorl", "tikhonov", "clae",
           "ifm", "hcl", "mochi", "aacl", "arocl", "adco", "caco", "rush", "layerwise")
"""The built-in method files (``rcs.methods.<module>``); importing one registers its methods
and settings sections. ``layerwise`` holds the layer-wise loss any method can add."""

SELECTION_LOSSES = ("acl", "air", "sat")
"""Per-sample selection losses (``rcs.selection.per_sample.Objective`` kinds): ACL's dual-stream
NT-Xent, AIR (ACL + SIR + AIR regularisers), SAT (cross-entropy on the classifier)."""

_loaded: list[bool] = []


def load_methods() -> None:
    """Import every built-in method file, then those of the ``rcs.methods`` entry points."""
    if _loaded:
        return
    _loaded.append(True)
    from importlib.metadata import entry_points

    for mod in BUILTIN:
        importlib.import_module(f"rcs.methods.{mod}")
    for ep in entry_points(group="rcs.methods"):
        importlib.import_module(ep.value.split(":")[0])


def method_names() -> list[str]:
    """Every registered method (the built-in ones and any registered by user code)."""
    load_methods()
    return sorted(METHODS)


def check_method_name(name: str, key: str = "train.method") -> None:
    """ConfigError naming the close match and every registered method unless ``name`` is one."""
    names = method_names()
    if name not in METHODS:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown {key} '{name}'.{hint} Available: {', '.join(names)}")


def build_method(name: str, cfg: RunConfig) -> Method:
    """The method ``name``; wrapped in :class:`rcs.methods.layerwise.LayerwiseContrastive`
    when ``train.layerwise.stages`` is set, then in :class:`TikhonovPenalty` when
    ``train.tikhonov.lam > 0`` (the ``tikhonov`` method is that wrapper around plain NT-Xent
    and requires it)."""
    check_method_name(name)
    method = METHODS[name](cfg)
    if list(cfg.train.layerwise.stages):
        from rcs.methods.layerwise import LayerwiseContrastive

        method = LayerwiseContrastive(method)
    lam = float(cfg.train.tikhonov.lam)
    if name == "tikhonov" and lam <= 0:
        raise ConfigError("train.method=tikhonov needs train.tikhonov.lam > 0 (the published "
                          "values are 0.1, 1 and 10), e.g. --set train.tikhonov.lam=1")
    if lam > 0:
        from rcs.methods.tikhonov import TikhonovPenalty

        method = TikhonovPenalty(method, lam)
    return method


def selection_loss_of(method: str) -> str:
    """The selection loss of registered method ``method`` (its :meth:`Method.selection_loss`):
    the one source every selector resolves its per-sample objective from."""
    names = method_names()
    if method not in METHODS:
        raise ConfigError(f"unknown train.method '{method}' (selection needs its selection "
                          f"loss); available: {', '.join(names)}")
    try:
        kind = METHODS[method].selection_loss()  # type: ignore[attr-defined]
    except TypeError as e:
        raise ConfigError(f"method '{method}': selection_loss must be a classmethod (selectors "
                          f"ask it by method name): {e}") from e
    if kind not in SELECTION_LOSSES:
        raise ConfigError(f"method '{method}' selects with '{kind}', which is not one of "
                          f"{', '.join(SELECTION_LOSSES)}")
    return kind
