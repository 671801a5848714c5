"""Config sections owned by higher layers: each pretraining method's settings (``train.<name>``).

The config layer imports no method. A method file defines its settings dataclass (fields with
defaults and docstrings, an optional ``validate()``) and registers it here with
:func:`register_section`; :class:`~rcs.config.train.TrainConfig` then holds one instance per
registered section, so YAML ``train.advcl: {pseudo_every: 2}``, ``--set
train.advcl.pseudo_every=2``, ``rcs config keys`` and ``rcs config show`` see every method key.

The registering modules are imported by name (:data:`SECTION_MODULES`, then the
``rcs.config_sections`` entry-point group) the first time the sections are needed, i.e. when a
config is built: the config layer depends on no higher layer at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

SECTION_MODULES: list[str] = ["rcs.methods.registry:load_methods"]
"""Targets (``module`` or ``module:function``, the function then called) whose import
registers sections: the method registry's ``load_methods`` imports every built-in method file.
Other packages add theirs through the ``rcs.config_sections`` entry-point group."""


@dataclass(frozen=True)
class Section:
    """One registered section: its key (``train.<name>``), settings class and the flat keys it
    replaced (old key -> field), refused with the new name."""

    group: str
    name: str
    cls: type
    old_keys: dict[str, str]


_SECTIONS: dict[str, dict[str, Section]] = {}
_state = {"loaded": False, "loading": False}


def register_section(group: str, name: str, cls: type,
                     old_keys: dict[str, str] | None = None) -> type:
    """Add settings dataclass ``cls`` as section ``<group>.<name>`` (e.g. ``train.advcl``).

    ``old_keys`` (else ``cls.OLD_KEYS``) maps retired flat keys of ``group`` to fields of
    ``cls``; by default every field ``f`` retires ``<name>_<f>`` (``advcl_pseudo_every`` ->
    ``advcl.pseudo_every``). Registering a name again replaces the section (a user method may
    redefine its own)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"section {group}.{name}: {cls!r} is not a dataclass")
    if not name.isidentifier():
        raise ValueError(f"section name {name!r} must be an identifier")
    fields = [f.name for f in dataclasses.fields(cls)]
    old = old_keys if old_keys is not None else getattr(cls, "OLD_KEYS", None)
    old = dict(old) if old is not None else {f"{name}_{f}": f for f in fields}
    _SECTIONS.setdefault(group, {})[name] = Section(group, name, cls, old)
    return cls


def load_section_modules() -> None:
    """Import every module that registers sections (once; re-entrant imports are skipped)."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        from importlib.metadata import entry_points

        for target in [*SECTION_MODULES,
                       *(ep.value for ep in entry_points(group="rcs.config_sections"))]:
            mod, _, fn = target.partition(":")
            module = importlib.import_module(mod)
            if fn:
                getattr(module, fn)()
        _state["loaded"] = True
    finally:
        _state["loading"] = False


def sections(group: str) -> dict[str, Section]:
    """The registered sections of ``group`` (``"train"``), by name, in registration order."""
    load_section_modules()
    return dict(_SECTIONS.get(group, {}))


def default_sections(group: str) -> dict[str, Any]:
    """A default instance of every section of ``group``: the field default of its holder."""
    return {name: s.cls() for name, s in sections(group).items()}


def renamed(group: str, key: str) -> str | None:
    """The new dotted key (``advcl.pseudo_every``) of a retired flat key of ``group``."""
    for s in sections(group).values():
        if key in s.old_keys:
            return f"{s.name}.{s.old_keys[key]}"
    return None


def upgrade_saved_config(data: dict[str, Any], group: str = "train") -> dict[str, Any]:
    """A copy of a config dict saved by an earlier rcs (a checkpoint's ``config_json``) with its
    retired flat keys of ``group`` moved into their sections (``advcl_pseudo_every: 2`` ->
    ``advcl: {pseudo_every: 2}``), so old checkpoints still load. User configs are not
    upgraded: there the flat keys are refused with the new name."""
    sec = data.get(group)
    if not isinstance(sec, dict):
        return data
    out = {k: v for k, v in sec.items()}
    for key in list(out):
        new = renamed(group, key)
        if new is not None:
            name, _, field_name = new.partition(".")
            out.setdefault(name, {})[field_name] = out.pop(key)
    return {**data, group: out}
