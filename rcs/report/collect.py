"""Collect what run folders hold: pretraining time and selection time, SA / RA per mode, curves.

For every run folder (written by ``rcs train``, then ``rcs finetune`` / ``rcs eval``):

The readers of a run folder's files (:func:`read_summary`, :func:`read_run_config`) are the
only ones in rcs: ``rcs submit collect`` (:mod:`rcs.launch.collect`) uses them too.

* ``summary.json``: method, selector, fraction, epochs, ``train_seconds`` and ``select_seconds``
  (the pretraining time is their sum; it is wall time, multiplied by the number of GPUs for
  GPU-hours when the run used CUDA); a run still in progress falls back to its checkpoint's
  progress record;
* ``metrics.jsonl``: the per-epoch pretraining loss (training curve);
* ``finetune*/<mode>/results.json``: SA, PGD-20 RA, AutoAttack RA, corruption accuracy of each
  fine-tuning mode, and its per-epoch loss.

One :class:`RunRecord` per (run, fine-tuning folder); a run without fine-tuning gives one record
with no accuracies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcs.errors import DataError
from rcs.utils.metrics import read_jsonl
from rcs.utils.serialize import read_json

MODES = ("slf", "alf", "aff")


@dataclass
class RunRecord:
    label: str
    path: Path
    method: str = "?"
    selector: str = "?"
    fraction: float | None = None
    epochs: int | None = None
    train_seconds: float | None = None
    select_seconds: float | None = None
    device: str = ""
    world_size: int = 1
    downstream: str = ""
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """mode -> {'SA', 'RA_pgd20', 'RA_autoattack', 'CA', 'n_test', 'losses', 'settings',
    'seconds'}"""
    pretrain_curve: list[tuple[int, float]] = field(default_factory=list)
    seed: int | None = None
    setup: str = ""
    """Fingerprint of the run's config.yaml without seed, name and out_dir: runs with equal
    setups are seeds of one experiment (plots show their mean and spread)."""

    @property
    def pretrain_seconds(self) -> float | None:
        if self.train_seconds is None:
            return None
        return self.train_seconds + (self.select_seconds or 0.0)

    @property
    def gpu_hours(self) -> float | None:
        if self.pretrain_seconds is None or not self.device.startswith("cuda"):
            return None
        return self.pretrain_seconds * max(self.world_size, 1) / 3600.0


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"cannot read '{path}' (not a JSON object); re-run the command that "
                        "writes it")
    return data


def read_summary(run: str | Path, strict: bool = False) -> dict[str, Any] | None:
    """The ``summary.json`` of a run folder (written by ``rcs train`` when the run ends); None
    when there is none yet (or, unless ``strict``, when it cannot be read; ``strict``: a
    DataError naming the file)."""
    path = Path(run) / "summary.json"
    if not path.is_file():
        return None
    if strict:
        return _read_json(path)
    data = read_json(path)
    return data if isinstance(data, dict) else None


def read_run_config(run: str | Path) -> dict[str, Any]:
    """The run's saved ``config.yaml`` as a mapping ({} when missing or unreadable)."""
    import yaml

    try:
        cfg = yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _base(run: Path, label: str) -> RunRecord:
    rec = RunRecord(label=label, path=run)
    s = read_summary(run, strict=True)
    if s is not None:
        rec.method, rec.selector = s.get("method", "?"), s.get("selector", "?")
        rec.fraction, rec.epochs = s.get("fraction"), s.get("epochs")
        rec.train_seconds, rec.select_seconds = s.get("train_seconds"), s.get("select_seconds")
        rec.device, rec.world_size = str(s.get("device", "")), int(s.get("world_size") or 1)
        if rec.selector == "full":
            rec.fraction = 1.0  # the whole training set every epoch
    elif (run / "checkpoint.pt").is_file():  # a run in progress: its last checkpoint
        from rcs.utils.checkpoint_io import load_checkpoint

        state = load_checkpoint(run / "checkpoint.pt")
        p, cfg = state.get("progress", {}), json.loads(state.get("config_json") or "{}")
        rec.method = cfg.get("train", {}).get("method", "?")
        rec.selector = cfg.get("selection", {}).get("method", "?")
        rec.fraction = cfg.get("selection", {}).get("fraction")
        rec.epochs = int(p.get("epoch", 1)) - 1
        rec.train_seconds, rec.select_seconds = p.get("train_seconds"), p.get("select_seconds")
    cfg = read_run_config(run)
    if cfg:
        import hashlib

        rec.seed = cfg.get("seed")
        rest = {k: v for k, v in cfg.items() if k not in ("seed", "name", "out_dir")}
        rec.setup = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str)
                                   .encode()).hexdigest()[:16]
    if (run / "metrics.jsonl").is_file():
        rec.pretrain_curve = [(int(r["epoch"]), float(r["loss"]))
                              for r in read_jsonl(run / "metrics.jsonl")
                              if r.get("event") == "epoch" and isinstance(r.get("loss"),
                                                                         (int, float))]
    return rec


def _mode_entry(res: dict[str, Any]) -> dict[str, Any]:
    h = res.get("headline") or {}
    pgd = (res.get("eval") or {}).get("pgd20") or {}
    ev = res.get("eval") or {}
    n_test = next((ev[k].get("n") for k in ("clean", "pgd20", "autoattack")
                   if isinstance(ev.get(k), dict) and ev[k].get("n")), None)
    return {"SA": h.get("SA"), "RA_pgd20": h.get("RA_pgd20"), "n_test": n_test,
            "pgd": {k: pgd.get(k) for k in ("eps", "alpha", "steps")} if pgd else {},
            "RA_autoattack": h.get("RA_autoattack"), "CA": h.get("CA"),
            "losses": list(res.get("losses") or []), "settings": res.get("settings", {}),
            "seconds": res.get("finetune_seconds")}


def collect_run(run: str | Path, label: str | None = None) -> list[RunRecord]:
    """The records of one run folder (see the module doc)."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"run folder '{run}' does not exist")
    if not ((run / "summary.json").is_file() or (run / "checkpoint.pt").is_file()):
        raise DataError(f"'{run}' is not an rcs run folder (no summary.json or checkpoint.pt); "
                        "pass folders written by `rcs train`")
    label = label or run.name
    base = _base(run, label)
    records = []
    for ft in sorted(p for p in run.glob("finetune*") if p.is_dir()):
        rec = _base(run, label)
        rec.downstream = ft.name[len("finetune-"):] if ft.name.startswith("finetune-") else ""
        for mode in MODES:
            f = ft / mode / "results.json"
            if f.is_file():
                res = _read_json(f)
                rec.modes[mode] = _mode_entry(res)
                rec.downstream = rec.downstream or res.get("dataset", "")
        if rec.modes:
            records.append(rec)
    return records or [base]


def collect(runs: list[str | Path]) -> list[RunRecord]:
    """Records of every run; labels are the folder names, made unique with their parents."""
    paths = [Path(r) for r in runs]
    names = [p.name for p in paths]
    labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    out: list[RunRecord] = []
    for p, lab in zip(paths, labels):
        out += collect_run(p, lab)
    return out
