"""SLURM settings of a job and the submitit executor built from them.

Resolution order (later wins): the defaults of :class:`rcs.config.schema.SlurmConfig`, the
cluster profile (``slurm/profiles/<name>.yaml``), the ``slurm:`` section of the config file,
``--set slurm.key=value`` overrides, then the command-line flags (``--partition`` ...). A
profile therefore supplies a cluster's defaults and anything written explicitly wins over it;
the lists ``extra_sbatch`` and ``setup`` add up over the levels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rcs.config.loader import from_dict, parse_override, read_yaml, read_yaml_mapping
from rcs.config.schema import SlurmConfig
from rcs.errors import ConfigError, LaunchError

LIST_KEYS = ("extra_sbatch", "setup")


def profile_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: $RCS_SLURM_PROFILES (``:``-separated), then
    ``./slurm/profiles`` and the profiles shipped with the package (package data in a wheel,
    ``slurm/profiles`` in a checkout)."""
    dirs = [Path(p) for p in os.environ.get("RCS_SLURM_PROFILES", "").split(os.pathsep) if p]
    from rcs.config.resources import profiles_dir

    shipped = profiles_dir()
    dirs += [Path.cwd() / "slurm" / "profiles", *([shipped] if shipped else [])]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def profile_path(name: str) -> Path:
    """The YAML file of profile ``name`` (a name from slurm/profiles, or a path to a YAML)."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"SLURM profile file '{name}' not found")
        return path
    for d in profile_dirs():
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    avail = list_profiles()
    raise ConfigError(f"unknown SLURM profile '{name}'. Available: "
                      f"{', '.join(avail) if avail else '(none found)'} (files slurm/profiles/"
                      "<name>.yaml; or pass the path of a YAML file)")


def load_profile(name: str) -> dict[str, Any]:
    """The ``slurm.*`` keys of a profile: a flat mapping of SlurmConfig keys (or nested under
    ``slurm:``); ``description`` is ignored."""
    path = profile_path(name)
    data = read_yaml_mapping(path, "SLURM profile", "a mapping of slurm keys", allow_empty=False)
    data = dict(data.get("slurm", data))
    data.pop("description", None)
    data.pop("profile", None)
    try:
        from_dict(SlurmConfig, data, "slurm")
    except ConfigError as e:
        raise ConfigError(f"SLURM profile '{path}': {e}") from None
    return data


def file_slurm_section(config: str | Path | None) -> dict[str, Any]:
    """The keys written in the ``slurm:`` section of a config file (following ``base:``)."""
    if not config:
        return {}
    section = read_yaml(config).get("slurm") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"config file '{config}': 'slurm' must be a section of keys")
    return dict(section)


def slurm_overrides(overrides: list[str]) -> dict[str, Any]:
    """``slurm.key=value`` entries of ``--set`` overrides, as a mapping (others are ignored)."""
    out: dict[str, Any] = {}
    for text in overrides or []:
        path, value = parse_override(text)
        if path[0] != "slurm":
            continue
        if len(path) != 2:
            raise ConfigError(f"override '{text}': slurm keys are flat (slurm.<key>=value)")
        out[path[1]] = value
    return out


def resolve_slurm(file_section: dict[str, Any] | None = None, overrides: list[str] | None = None,
                  flags: dict[str, Any] | None = None) -> SlurmConfig:
    """The validated SlurmConfig of a job (see the module docstring for the order). The list
    keys (``extra_sbatch``, ``setup``) accumulate over the levels instead of replacing."""
    levels = [dict(file_section or {}), slurm_overrides(overrides or []),
              {k: v for k, v in (flags or {}).items() if v is not None}]
    explicit: dict[str, Any] = {}
    for level in levels:
        explicit.update(level)
    data = load_profile(explicit["profile"]) if explicit.get("profile") else {}
    for key in LIST_KEYS:
        lines: list[Any] = []
        for level in [data] + levels:
            value = level.get(key)
            if value is None:
                continue
            for line in value if isinstance(value, list) else [value]:
                if line not in lines:
                    lines.append(line)
        explicit[key] = lines
    data.update(explicit)
    cfg = from_dict(SlurmConfig, data, "slurm")
    cfg.validate()
    return cfg


def sbatch_options(lines: list[str]) -> dict[str, Any]:
    """``['--exclusive', '--mail-type=END']`` -> ``{'exclusive': True, 'mail-type': 'END'}``."""
    out: dict[str, Any] = {}
    for line in lines:
        opt = line.strip()
        if opt.startswith("#SBATCH"):
            opt = opt[len("#SBATCH"):].strip()
        key, sep, value = opt[2:].partition("=")
        out[key] = value if sep else True
    return out


def executor_parameters(cfg: SlurmConfig, name: str) -> dict[str, Any]:
    """Keyword arguments of ``AutoExecutor.update_parameters`` for ``cfg``."""
    params: dict[str, Any] = {
        "name": name, "timeout_min": int(cfg.time_min), "nodes": int(cfg.nodes),
        "tasks_per_node": int(cfg.ntasks_per_node()), "cpus_per_task": int(cfg.cpus_per_task),
        "mem_gb": float(cfg.mem_gb),
        "slurm_signal_delay_s": int(cfg.signal_delay_s),
        "slurm_array_parallelism": int(cfg.array_parallelism),
    }
    if cfg.gpus_per_node:
        params["gpus_per_node"] = int(cfg.gpus_per_node)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(cfg, key):
            params[f"slurm_{key}"] = getattr(cfg, key)
    if cfg.extra_sbatch:
        params["slurm_additional_parameters"] = sbatch_options(cfg.extra_sbatch)
    # progress bars redraw at most every 30 s in the log files (unless set otherwise)
    params["slurm_setup"] = ["export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}", *cfg.setup]
    return params


def require_slurm() -> None:
    """Raise a clear error when this machine cannot submit SLURM jobs."""
    missing = [c for c in ("sbatch", "srun", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        raise LaunchError(
            f"SLURM is not available here ({', '.join(missing)} not found). Run the command "
            "without --slurm (or under torchrun), submit from a cluster login node, or start the "
            "local one-node test cluster: sudo bash slurm/start_cluster.sh")


def make_executor(cfg: SlurmConfig, folder: str | Path, name: str) -> Any:
    """A submitit AutoExecutor for ``cfg`` writing into ``folder`` (``%j`` = the job id)."""
    from rcs.utils.optional import require

    submitit = require("submitit", "submitting to SLURM (rcs submit / --slurm)")

    if cfg.executor == "slurm":
        require_slurm()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cfg.executor,
                                     slurm_max_num_timeout=int(cfg.max_timeouts))
    params = executor_parameters(cfg, name)
    if cfg.executor != "slurm":  # the local executor knows only the generic keys
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        params.pop("mem_gb", None)
    executor.update_parameters(**params)
    return executor
