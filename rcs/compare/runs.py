"""Running one comparison job: its config, the shared warm-up, pretraining, fine-tuning,
evaluation, reference encoders, and the reuse of finished runs (for :mod:`rcs.compare.study`).

Every function takes the :class:`rcs.compare.spec.CompareSpec` and is a plain top-level
callable, so that SLURM job arrays (``rcs.launch.submit_array``) can pickle it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcs.compare.spec import CompareSpec
from rcs.errors import ConfigError
from rcs.utils.atomic import atomic_write_text

RESULT = "result.json"


@dataclass(frozen=True)
class Job:
    """One pretraining + fine-tuning run."""

    selector: str
    fraction: float
    seed: int

    @property
    def name(self) -> str:
        if self.selector == "full":
            return f"full-s{self.seed}"
        return f"{self.selector}-k{self.fraction:g}-s{self.seed}"


def job_config(spec: CompareSpec, job: Job) -> Any:
    """The run's config: the spec's config and overrides, then this job's selector/fraction/
    seed and folder (the only things that differ between runs)."""
    from rcs.config import load_config

    extra = [f"out_dir={spec.runs / job.name}", f"seed={job.seed}",
             f"selection.method={job.selector}", f"selection.fraction={job.fraction}"]
    if spec.device:
        extra.append(f"device={spec.device}")
    return load_config(spec.config, list(spec.overrides) + extra)


def _config_dict(cfg: Any, drop_selector: bool = False) -> dict[str, Any]:
    from rcs.config import to_dict

    d = cfg if isinstance(cfg, dict) else to_dict(cfg)
    d = json.loads(json.dumps(d, default=str))
    d.pop("out_dir", None)
    if drop_selector:
        d.get("selection", {}).pop("method", None)
    return d


def _hash(d: dict[str, Any], spec: CompareSpec | None) -> str:
    extra = {} if spec is None else {"ft": list(spec.finetune_overrides), "modes": spec.modes,
                                     "attacks": spec.attacks}
    blob = json.dumps({"cfg": d, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _settings_hash(cfg: Any, spec: CompareSpec | None, drop_selector: bool = False) -> str:
    """Fingerprint of everything that makes a run what it is (not its folder)."""
    return _hash(_config_dict(cfg, drop_selector), spec)


def _incompatible(stored: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any],
                  prefix: str = "") -> list[str]:
    """Keys whose value differs; a key that only ``now`` has (added to the config schema after
    the run) is compatible when it holds its default."""
    bad = []
    for k, v in now.items():
        if k not in stored:
            if v != defaults.get(k):
                bad.append(prefix + k)
        elif isinstance(v, dict) and isinstance(stored[k], dict):
            bad += _incompatible(stored[k], v, defaults.get(k) or {}, f"{prefix}{k}.")
        elif v != stored[k]:
            bad.append(prefix + k)
    return bad


def _same_settings(run_dir: Path, stored_hash: str | None, cfg: Any, spec: CompareSpec | None,
                   drop_selector: bool = False) -> bool:
    """Was ``run_dir`` made with these settings? Exact fingerprint, or -- when the config schema
    gained keys since -- the run's own config (in its checkpoint) equal on every shared key and
    every new key at its default."""
    from rcs.config import RunConfig
    from rcs.utils.checkpoint_io import load_checkpoint

    if stored_hash == _settings_hash(cfg, spec, drop_selector):
        return True
    ckpt = run_dir / "checkpoint.pt"
    text = load_checkpoint(ckpt).get("config_json") if ckpt.is_file() else None
    if not text:
        return False
    stored = _config_dict(json.loads(text), drop_selector)
    if _hash(stored, spec) != stored_hash:  # not the hashed config, or other fine-tuning
        return False
    return not _incompatible(stored, _config_dict(cfg, drop_selector),
                             _config_dict(RunConfig(), drop_selector))


def shared_warmup(spec: CompareSpec, job: Job, cfg: Any, log: Callable[[str], None] = print
                  ) -> Path | None:
    """The checkpoint at the end of the full-data warm-up shared by the coreset selectors of
    ``job.fraction`` and ``job.seed`` (trained on first use); None for ``full`` or no warm-up.

    Only ``selection.method`` differs between those runs, and it plays no part before the first
    selection (same init, split, batch order, augmentation draws and lr schedule), so the
    warm-up is computed once and each run resumes from it (rcs train resumes exactly).
    """
    import dataclasses

    from rcs.train.trainer import Trainer

    warm = int(cfg.selection.warmup_epochs)
    if not spec.share_warmup or job.selector == "full" or warm < 1:
        return None
    wdir = spec.runs / "_warmup" / f"k{job.fraction:g}-s{job.seed}"
    key = _settings_hash(cfg, None, drop_selector=True)
    stamp = wdir / "warmup.json"
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if (wdir / "checkpoint.pt").is_file() and _same_settings(
                wdir, info.get("settings_hash"), cfg, None, drop_selector=True):
            if info.get("settings_hash") != key:
                atomic_write_text(stamp, json.dumps(info | {"settings_hash": key}))
            return wdir
        raise ConfigError(f"'{wdir}' holds a warm-up made with other settings; use another "
                          "--out (or --runs-dir) or delete that folder")
    log(f"[compare] shared warm-up for k={job.fraction:g}, seed {job.seed}: {warm} full-data "
        f"epoch(s) -> {wdir}")
    wdir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(dataclasses.replace(cfg, out_dir=str(wdir)), resume="auto")
    trainer.fit(until_epoch=warm)
    atomic_write_text(stamp, json.dumps({"settings_hash": key, "warmup_epochs": warm,
                                         "train_seconds": trainer.progress.train_seconds}))
    return wdir


def _cached(spec: CompareSpec, name: str, run_dir: Path, cfg: Any, drop_selector: bool,
            log: Callable[[str], None]) -> dict[str, Any] | None:
    """The finished row in ``run_dir`` (with any missing extra radius added), or None."""
    done = run_dir / RESULT
    if not done.is_file():
        return None
    row = json.loads(done.read_text())
    key = _settings_hash(cfg, spec, drop_selector)
    if not _same_settings(run_dir, row.get("settings_hash"), cfg, spec, drop_selector):
        raise ConfigError(f"'{run_dir}' holds a run made with other settings; use another --out "
                          f"(or --runs-dir) or delete that folder")
    log(f"[compare] {name}: reusing {done}")
    if _add_extra_eps(spec, row, run_dir, log) or row.get("settings_hash") != key:
        row["settings_hash"] = key
        atomic_write_text(done, json.dumps(row, indent=2, sort_keys=True, default=str))
    return row


def _finetune_row(spec: CompareSpec, name: str, run_dir: Path, row: dict[str, Any],
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Fine-tune and evaluate the checkpoint in ``run_dir``; complete ``row`` and save it."""
    from rcs.finetune import finetune_config, load_pretrained, run_finetune

    pre = load_pretrained(run_dir / "checkpoint.pt")
    ft_cfg = finetune_config(pre, overrides=list(spec.finetune_overrides))
    log(f"[compare] {name}: {', '.join(m.upper() for m in spec.modes)} + "
        f"{', '.join(spec.attacks)}")
    res = run_finetune(pre, ft_cfg, list(spec.modes), run_dir / "finetune", list(spec.attacks),
                       resume=True, log=log)
    first = spec.modes[0]
    row.update({
        "finetune_seconds": sum(r["finetune_seconds"] for r in res.values()),
        "eval_seconds": sum(sum(r.get("eval", {}).get("seconds", {}).values())
                            for r in res.values()),
        "SA": res[first]["headline"]["SA"], "RA": res[first]["headline"]["RA_pgd20"],
        "modes": {m: r["headline"] for m, r in res.items()},
        "pgd": {k: res[first]["eval"]["pgd20"].get(k) for k in ("eps", "alpha", "steps", "n")}})
    _add_extra_eps(spec, row, run_dir, log)
    atomic_write_text(run_dir / RESULT, json.dumps(row, indent=2, sort_keys=True, default=str))
    return row


def run_job(spec: CompareSpec, job: Job, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pretrain (resuming an interrupted run), fine-tune, evaluate; returns the run's row."""
    from rcs.train.trainer import Trainer

    cfg = job_config(spec, job)
    run_dir = Path(cfg.out_dir)
    key = _settings_hash(cfg, spec)
    row = _cached(spec, job.name, run_dir, cfg, False, log)
    if row is not None:
        return row
    warm = shared_warmup(spec, job, cfg, log)
    if warm is not None and not (run_dir / "checkpoint.pt").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("checkpoint.pt", "metrics.jsonl"):
            if (warm / name).is_file():
                shutil.copyfile(warm / name, run_dir / name)
    log(f"[compare] {job.name}: pretraining -> {run_dir}"
        + (f" (from the shared warm-up {warm})" if warm is not None else ""))
    summary = Trainer(cfg, resume="auto").fit()
    sizes = _coreset_sizes(run_dir)
    row = {
        "selector": job.selector, "fraction": job.fraction, "seed": job.seed, "run": job.name,
        "coreset_size": sizes[-1] if sizes else summary["samples_seen"] // summary["epochs"],
        "shared_warmup": str(warm) if warm is not None else None,
        "selections": summary["selections"],
        "epochs": summary["epochs"], "samples_seen": summary["samples_seen"],
        "train_seconds": summary["train_seconds"], "select_seconds": summary["select_seconds"],
        "pretrain_seconds": summary["train_seconds"] + summary["select_seconds"],
        "selection_timings": _selection_timings(run_dir),
        "final_loss": summary["final_loss"], "device": summary["device"],
        "settings_hash": key}
    return _finetune_row(spec, job.name, run_dir, row, log)


REFERENCES = ("init", "warmup")
"""Reference encoders that saw no coreset epoch: ``init`` (untrained: what SLF gets from random
features) and ``warmup`` (after the shared full-data warm-up only)."""


def reference_row(spec: CompareSpec, kind: str, seed: int,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """SLF + evaluation of a reference encoder (``kind`` in :data:`REFERENCES`) for ``seed``:
    the floor against which the selectors' gains are read."""
    import dataclasses

    from rcs.train.trainer import Trainer
    from rcs.utils.checkpoint_io import load_checkpoint

    if kind not in REFERENCES:
        raise ConfigError(f"reference {kind!r} is not one of {', '.join(REFERENCES)}")
    coreset = [s for s in spec.selectors if s != "full"]
    base = Job(coreset[0] if coreset else "random",
               min(spec.fractions) if spec.fractions else 0.1, seed)
    cfg = job_config(spec, base)
    key = _settings_hash(cfg, spec, drop_selector=True)
    name = f"{kind}-s{seed}"
    if kind == "init":
        run_dir = spec.runs / "_init" / f"s{seed}"
        row = _cached(spec, name, run_dir, cfg, True, log)
        if row is not None:
            return row
        if not (run_dir / "checkpoint.pt").exists():
            Trainer(dataclasses.replace(cfg, out_dir=str(run_dir)), resume="none").save()
        samples, seconds, epochs = 0, 0.0, 0
    else:
        run_dir = shared_warmup(spec, base, cfg, log)
        if run_dir is None:
            raise ConfigError("the warm-up reference needs selection.warmup_epochs >= 1 and "
                              "the shared warm-up")
        row = _cached(spec, name, run_dir, cfg, True, log)
        if row is not None:
            return row
        prog = load_checkpoint(run_dir / "checkpoint.pt")["progress"]
        samples, seconds, epochs = prog["samples_seen"], prog["train_seconds"], prog["epoch"] - 1
    row = {"selector": kind, "fraction": 0.0, "seed": seed, "run": name, "coreset_size": 0,
           "selections": 0, "epochs": epochs, "samples_seen": samples, "train_seconds": seconds,
           "select_seconds": 0.0, "pretrain_seconds": seconds, "settings_hash": key,
           "reference": True}
    return _finetune_row(spec, name, run_dir, row, log)


def eps_label(eps: float) -> str:
    """``8/255`` for 8/255 (radii are named in 1/255 units)."""
    return f"{round(eps * 255, 3):g}/255"


def _add_extra_eps(spec: CompareSpec, row: dict[str, Any], run_dir: Path,
                   log: Callable[[str], None]) -> bool:
    """Evaluate the missing ``spec.extra_eps`` radii into ``row['RA_extra']``; True if any."""
    import copy
    import dataclasses

    extra = row.setdefault("RA_extra", {})
    todo = [e for e in spec.extra_eps if eps_label(e) not in extra]
    if not todo:
        return False
    from rcs.data import build_dataset
    from rcs.evaluate import pgd_accuracy
    from rcs.finetune import finetune_config, load_classifier, load_pretrained
    from rcs.utils.device import resolve_device

    cfg = finetune_config(load_pretrained(run_dir / "checkpoint.pt"),
                          overrides=list(spec.finetune_overrides))
    device = resolve_device(cfg.device)
    clf, _ = load_classifier(run_dir / "finetune" / spec.modes[0] / "classifier.pt", device)
    test_cfg = copy.deepcopy(cfg.data)
    test_cfg.limit = 0  # as run_finetune: data.limit cuts the training split only
    test_set = build_dataset(test_cfg, split="test")
    for eps in todo:
        atk = dataclasses.replace(cfg.eval.pgd, eps=float(eps), alpha=float(eps) / 4)
        res = pgd_accuracy(clf, test_set, atk, cfg.eval.batch_size, device, cfg.eval.limit,
                           cfg.eval.seed)
        extra[eps_label(eps)] = 100.0 * res["accuracy"]
        log(f"[compare] {row['run']}: PGD-{atk.steps} at eps {eps_label(eps)}: "
            f"{extra[eps_label(eps)]:.2f}%")
    return True


def _coreset_sizes(run_dir: Path) -> list[int]:
    out = []
    for p in sorted((run_dir / "coresets").glob("epoch_*.json")):
        out.append(int(json.loads(p.read_text()).get("size", 0)))
    return out


def _selection_timings(run_dir: Path) -> dict[str, float]:
    """Seconds per selection phase, summed over the run's selections."""
    tot: dict[str, float] = {}
    for p in sorted((run_dir / "coresets").glob("epoch_*.json")):
        for k, v in json.loads(p.read_text()).get("meta", {}).get("timings", {}).items():
            tot[k] = tot.get(k, 0.0) + float(v)
    return tot


def warmup_job(spec: CompareSpec, job: Job) -> str | None:
    """Train (or find) the shared warm-up of ``job`` (a callable for a SLURM array)."""
    warm = shared_warmup(spec, job, job_config(spec, job))
    return None if warm is None else str(warm)
