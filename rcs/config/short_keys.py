"""Short names of the config keys that have their own command-line flags.

``rcs train --fraction 0.1`` sets ``selection.fraction`` and ``rcs submit train --sweep
fraction=0.1,0.2`` sweeps it: both read this one table (``--init-continue`` is the short name
``init_continue``).
"""

from __future__ import annotations

SHORT_KEYS: dict[str, str] = {
    "method": "train.method",
    "selector": "selection.method",
    "fraction": "selection.fraction",
    "epochs": "train.epochs",
    "init": "train.init",
    "init_continue": "train.init_continue",
    "coreset": "selection.coreset",
}


def full_key(name: str) -> str:
    """The dotted config key of a short name; any other name is returned unchanged."""
    return SHORT_KEYS.get(name, name)
