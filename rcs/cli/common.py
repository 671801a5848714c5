"""Helpers shared by the sub-commands: config resolution and run folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rcs.config import RunConfig, load_config, save_config


def add_config_args(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    """The options every config-driven command shares: --config, --set, --out, --device."""
    p.add_argument("--config", "-c", required=config_required, metavar="YAML",
                   help="YAML config file (see configs/); defaults are used for missing keys")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override one config key with a dotted path, e.g. --set train.epochs=5 "
                        "--set train.attack.eps=8/255 (repeatable; `rcs config keys` lists keys)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder of the run (overrides out_dir); the resolved config, "
                        "metrics.jsonl and checkpoints are written there")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="auto | cpu | cuda | cuda:N (overrides the config's device)")


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads of this process (see :func:`rcs.utils.threads`)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of this process (default: $RCS_THREADS, else "
                        "$OMP_NUM_THREADS, else every core this process may use). Running "
                        "several rcs processes on one machine, give each cores/processes")


def resolve_config(args: argparse.Namespace, extra: list[str] | None = None) -> RunConfig:
    """Config file + ``--set`` overrides + the command's own flags (``extra``), validated."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "out", None):
        overrides.append(f"out_dir={args.out}")
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    overrides += extra or []
    cfg = load_config(getattr(args, "config", None), overrides)
    check_names(cfg)
    return cfg


def check_names(cfg: RunConfig) -> None:
    """Check every registry name of ``cfg`` before any work: ``data.name`` (readers),
    ``model.arch`` and ``model.head`` (arch and head registries), ``train.method`` and
    ``selection.method``; each against what is registered now (so names added with
    ``register_reader`` / ``register_arch`` / ``register_head`` / ``register_method`` /
    ``register_selector`` are valid), with the closest name and the full list on error."""
    import difflib

    from rcs.data.readers import check_reader
    from rcs.errors import ConfigError
    from rcs.methods.registry import check_method_name
    from rcs.models import check_arch, check_head
    from rcs.selection.base import SELECTORS, load_selectors

    check_reader(cfg.data.name)
    check_arch(cfg.model.arch)
    check_head(cfg.model.head)
    check_method_name(cfg.train.method)
    load_selectors()
    valid = sorted(SELECTORS)
    if cfg.selection.method not in valid:
        close = difflib.get_close_matches(cfg.selection.method, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown selection.method '{cfg.selection.method}'.{hint} "
                          f"Available: {', '.join(valid)}")


def prepare_run_dir(cfg: RunConfig, name: str = "config.yaml") -> Path:
    """Create the run folder and save the resolved config in it."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / name)
    return out


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A markdown table of ``rows`` (also returned as text)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    from rcs.utils.tables import markdown_table, short_number

    text = markdown_table(columns, [[r.get(c, "") for c in columns] for r in rows],
                          aligned=True, fmt=short_number)
    print(text)
    return text

