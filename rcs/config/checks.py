"""The two checks every config section's ``validate()`` is written with."""

from __future__ import annotations

import difflib

from rcs.errors import ConfigError


def check(cond: bool, msg: str) -> None:
    """Raise :class:`ConfigError` with ``msg`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(msg)


def check_in(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` (of key ``name``) is one of ``choices``."""
    check(value in choices, f"{name}={value!r} is not one of {', '.join(choices)}")


def check_name(key: str, value: str, registered: list[str] | tuple[str, ...],
               extra: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` (of ``key``) is one of the ``registered``
    names of a registry, naming the closest one and listing them all; ``extra`` says what else
    the key accepts (e.g. a factory by dotted path)."""
    if value in registered:
        return
    close = difflib.get_close_matches(value, list(registered), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{key}={value!r} is not one of {', '.join(registered)}{extra}.{hint}")
