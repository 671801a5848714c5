"""YAML configs -> typed dataclasses, dotted overrides, and the resolved-config file.

``load_config("configs/x.yaml", ["train.epochs=5"])`` reads the YAML with ``yaml.safe_load``,
applies the overrides, builds the dataclasses (checking every key and type) and validates.
Numbers may be written as fractions (``eps: 8/255``). A config may name a parent with
``base: other.yaml`` (relative to itself); the child's keys win. ``path`` may also be the name
of a shipped config (``cifar10_acl_rcs``, ``tiny/cifar10_acl_rcs``), and relative input paths
in a file (``data.root``, ``data.cache_dir``, ``eval.corruptions_root``) are relative to it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from rcs.config.schema import RunConfig
from rcs.config.sections import renamed, sections
from rcs.errors import ConfigError
from rcs.utils.serialize import to_dict

T = TypeVar("T")
_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)\s*/\s*(\d+(?:\.\d*)?)\s*$", re.I)


def _closest(key: str, valid: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    dot = f"{prefix}." if prefix else ""
    hint = f" Did you mean '{dot}{match[0]}'?" if match else ""
    return f"{hint} Valid keys: {', '.join(sorted(valid))}."


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise a ConfigError naming ``where``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}={value!r} has the wrong type; expected {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} must be a list")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}={value!r} must have exactly {len(args)} entries")
            return tuple(_coerce(v, a, f"{where}[{i}]")
                         for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        seq = [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}={value!r} must be an integer")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{where}={value!r} must be an integer") from None
        if not f.is_integer():
            raise ConfigError(f"{where}={value!r} must be an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} must be a number")
        if isinstance(value, str):
            m = _FRACTION.match(value)
            if m:
                if float(m.group(2)) == 0:
                    raise ConfigError(f"{where}={value!r} divides by zero; write a fraction such "
                                      "as 8/255")
                return float(m.group(1)) / float(m.group(2))
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}={value!r} must be a number (fractions like 8/255 are "
                              "fine)") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}={value!r} must be a string")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys with the closest valid one."""
    hints = get_type_hints(cls)
    group = _section_group(cls)
    secs = sections(group) if group else {}
    names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("sections")]
    kwargs, extra = {}, {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key in secs:
            extra[key] = _coerce(value, secs[key].cls, where)
        elif key in names:
            kwargs[key] = _coerce(value, hints[key], where)
        elif group and (new := renamed(group, str(key))):
            dot = f"{prefix}." if prefix else ""
            raise ConfigError(f"config key '{where}' was renamed: write '{dot}{new}' (every "
                              f"method's settings are a section, {dot}<method>.<key>; `rcs "
                              "config keys` lists them)")
        else:
            raise ConfigError(f"unknown config key '{where}'."
                              f"{_closest(str(key), names + list(secs), prefix)}")
    obj = cls(**kwargs)
    if group:
        getattr(obj, _section_field(cls)).update(extra)
    return obj


def _section_field(cls: type) -> str:
    return next(f.name for f in dataclasses.fields(cls) if f.metadata.get("sections"))


def _section_group(cls: type) -> str:
    """The section group a dataclass holds (``"train"`` for TrainConfig), or ''."""
    return next((f.metadata["sections"] for f in dataclasses.fields(cls)
                 if f.metadata.get("sections")), "")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.epochs=5'`` -> (['train', 'epochs'], 5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value "
                          "(e.g. --set train.epochs=5)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_mapping(path: Path, what: str, expected: str, allow_empty: bool = True
                      ) -> dict[str, Any]:
    """``yaml.safe_load`` of ``path``, which must hold a mapping (``expected`` says which).
    ``allow_empty=False``: a file with no content at all (or comments only) is an error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} '{path}' is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} '{path}' cannot be read as text ({e})") from None
    if data is None:
        if not allow_empty:
            raise ConfigError(f"{what} '{path}' is empty (no settings); write the keys you want "
                              "(`rcs config keys` lists them), or do not pass it (leave out "
                              "--config) to use the defaults")
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold {expected}")
    return data


RELATIVE_PATH_KEYS = (("data", "root"), ("data", "cache_dir"), ("eval", "corruptions_root"))
"""Keys holding input paths: a relative value in a config file is taken relative to the folder
of that file (as ``base:``), so a config works from any working directory. Values given with
``--set`` stay relative to the working directory."""


def _anchor_paths(data: dict[str, Any], folder: Path) -> None:
    for section, key in RELATIVE_PATH_KEYS:
        sec = data.get(section)
        value = sec.get(key) if isinstance(sec, dict) else None
        if isinstance(value, str) and value.strip():
            p = Path(value).expanduser()
            if not p.is_absolute():
                sec[key] = str((folder / p).resolve())


def resolve_config_path(path: str | Path) -> Path:
    """``path`` if it is a file, else the shipped config of that name (``cifar10_acl_rcs``,
    ``tiny/cifar10_acl_rcs``; see :mod:`rcs.config.resources`); ConfigError listing them."""
    from rcs.config.resources import configs_dir, find_config, list_configs

    p = Path(path)
    if p.is_file():
        return p
    found = find_config(path)
    if found is not None:
        return found
    names = [n for n, _ in list_configs()]
    where = configs_dir()
    raise ConfigError(
        f"config file '{path}' not found, and no shipped config has that name."
        + (f" Shipped configs ({where}; `rcs config list`): {', '.join(names)}" if names
           else ""))


def read_yaml(path: str | Path, _child: Path | None = None) -> dict[str, Any]:
    """Read a config file or shipped config name (following ``base:``) into a plain dict, with
    clear errors; relative input paths (:data:`RELATIVE_PATH_KEYS`) become absolute, taken
    from the folder of the file that sets them."""
    path = Path(path)
    if _child is not None and not path.is_file():
        raise ConfigError(f"config file '{_child}' names base: {path.name}, but '{path}' does not "
                          "exist (base: is relative to the folder of the config that names it)")
    path = resolve_config_path(path)
    data = read_yaml_mapping(path, "config file", "a mapping at the top level", allow_empty=False)
    base = data.pop("base", None)
    _anchor_paths(data, path.resolve().parent)
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"config file '{path}': base: must be a file name, got {base!r}")
        data = _merge(read_yaml(path.parent / base, _child=path), data)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load ``path`` (or the defaults when None), apply ``overrides`` and validate."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(RunConfig, data).validate()


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically), beside a run's outputs."""
    from rcs.utils.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def describe_config(cls: type = RunConfig, prefix: str = "",
                    instance: Any = None) -> list[tuple[str, str, str]]:
    """(key, default, doc) for every leaf key, for ``--help`` listings."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(
                    getattr(b, "value", None), ast.Constant):
                docs[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[union-attr]
    except (OSError, TypeError, SyntaxError):
        pass
    rows = []
    hints = typing.get_type_hints(cls)
    default = cls() if instance is None else instance
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.metadata.get("sections"):  # each method's settings, train.<name>.<key>
            for name, section in getattr(default, f.name).items():
                rows += describe_config(type(section), f"{prefix}{name}.", section)
        elif dataclasses.is_dataclass(hints[f.name]):  # the parent's default (e.g. PGD-20)
            rows += describe_config(hints[f.name], key + ".", getattr(default, f.name))
        else:
            rows.append((key, repr(getattr(default, f.name)), docs.get(f.name, "")))
    return rows
