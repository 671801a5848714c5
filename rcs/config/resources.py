"""The configs and SLURM profiles shipped with rcs, found the same way in a checkout and in an
installed wheel.

A wheel carries them as package data (``rcs/_data/configs``, ``rcs/_data/slurm_profiles``,
copied from the repository's ``configs/`` and ``slurm/profiles/`` by ``setup.py``); a source
checkout (or an editable install) reads the repository's folders directly. ``-c NAME`` finds
``configs/NAME.yaml`` (``NAME`` may name a subfolder: ``tiny/cifar10_acl_rcs``) from any folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data"
"""Where a wheel puts the shipped files (absent in a checkout)."""
CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when rcs runs from its source checkout."""


def _shipped(packaged: str, *in_checkout: str) -> Path | None:
    if (PACKAGE_DATA / packaged).is_dir():
        return PACKAGE_DATA / packaged
    folder = CHECKOUT.joinpath(*in_checkout)
    if (CHECKOUT / "pyproject.toml").is_file() and folder.is_dir():
        return folder
    return None


def configs_dir() -> Path | None:
    """The folder of the shipped configs (None when neither the package data nor a checkout
    has them)."""
    return _shipped("configs", "configs")


def profiles_dir() -> Path | None:
    """The folder of the shipped SLURM cluster profiles."""
    return _shipped("slurm_profiles", "slurm", "profiles")


def list_configs() -> list[tuple[str, Path]]:
    """``(name, path)`` of every shipped config; the name is the path below ``configs/``
    without ``.yaml`` (``cifar10_acl_rcs``, ``tiny/cifar10_acl_rcs``)."""
    root = configs_dir()
    if root is None:
        return []
    return sorted((p.relative_to(root).with_suffix("").as_posix(), p)
                  for p in root.rglob("*.yaml"))


def find_config(name: str | Path) -> Path | None:
    """The shipped config called ``name``: ``cifar10_acl_rcs``, ``tiny/cifar10_acl_rcs``,
    with or without ``.yaml``, also written ``configs/tiny/x.yaml`` (as the docs do, so their
    commands work outside the checkout). None when there is no such config."""
    root = configs_dir()
    if root is None:
        return None
    text = Path(name).as_posix()
    if text.startswith("configs/"):
        text = text[len("configs/"):]
    for cand in (text, f"{text}.yaml"):
        p = root / cand
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            return p
    return None


def describe(path: Path) -> str:
    """The first comment line of a config file (its one-line description), or ''."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line.strip():
                break
    except OSError:
        pass
    return ""
