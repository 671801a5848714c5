"""The two checks every config section's ``validate()`` is written with."""

from __future__ import annotations

from rcs.errors import ConfigError


def check(cond: bool, msg: str) -> None:
    """Raise :class:`ConfigError` with ``msg`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(msg)


def check_in(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` (of key ``name``) is one of ``choices``."""
    check(value in choices, f"{name}={value!r} is not one of {', '.join(choices)}")
