"""Equal-budget comparison of coreset selectors: pretrain with each, fine-tune, evaluate, report.

For every selector x fraction x seed (``full`` once per seed, at fraction 1), the harness runs
the same pretraining config -- same epochs, warm-up, re-selection period, batch size, attack and
model, and, for a given seed, the same initialisation, validation split and batch-order seeds;
only ``selection.method`` / ``selection.fraction`` differ -- then SLF (by default; any of
slf/alf/aff) and the clean + PGD-20 evaluation of ``rcs.finetune`` / ``rcs.evaluate``. It writes

    OUT/runs/<selector>-k<fraction>-s<seed>/   each run (rcs train layout + finetune/ + result.json)
    OUT/results.json                           every run's row, the mean/std summary, the command,
                                               the machine, the date and the shared config
    OUT/results.md                             per-run table, mean ± std over seeds, the plot
    OUT/robust_vs_time.png                     RA (and SA) against pretraining time

Pretraining time is ``train_seconds + select_seconds`` of the run (wall time of the training
epochs plus every coreset selection); selection time is ``select_seconds`` alone. Fine-tuning
and evaluation are the same work for every selector and are reported separately. Wall times on
a shared machine are noisy, so ``images seen`` (a deterministic measure of training work) is
reported too.

A run whose ``result.json`` exists is reused when it was made with the same settings (the
harness can be re-run after an interruption; ``rcs train`` itself resumes mid-run), and refused
with a clear error otherwise. ``slurm=True`` sends the runs as a SLURM job array through
``rcs.launch`` (when that package provides it).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from baselines.results import machine, markdown, plot, summarize
from rcs.errors import ConfigError, NotAvailableError
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


@dataclass
class CompareSpec:
    """What to compare. ``overrides`` apply to every run (``--set``); ``finetune_overrides`` to
    the fine-tuning config of every run (on top of the pretraining run's own config)."""

    config: str | None
    selectors: list[str]
    fractions: list[float]
    seeds: list[int]
    out: str
    overrides: list[str] = field(default_factory=list)
    finetune_overrides: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: ["slf"])
    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd20"])
    device: str | None = None
    references: bool = False
    """Also fine-tune and evaluate the :data:`REFERENCES` encoders for every seed."""
    runs_dir: str | None = None
    """Where the run folders go (default ``out/runs``)."""
    extra_eps: list[float] = field(default_factory=list)
    """Also report PGD-20 robust accuracy at these radii (step eps/4) on the fine-tuned
    classifier of the first mode, e.g. [2/255] where RA at 8/255 sits at the floor (short
    pretraining). Added to finished runs on a re-run without retraining anything."""
    share_warmup: bool = True
    """Train the full-data warm-up once per (fraction, seed) and start every coreset selector
    of that fraction and seed from its checkpoint (the warm-up does not depend on the selector,
    and resuming is exact, so each run is what it would be from scratch; its measured time is
    counted in every run that starts from it)."""

    @property
    def runs(self) -> Path:
        return Path(self.runs_dir) if self.runs_dir else Path(self.out) / "runs"

    def validate(self) -> CompareSpec:
        from rcs.selection.base import SELECTORS, _load_plugins

        _load_plugins()
        if not self.selectors or not self.seeds:
            raise ConfigError("compare needs at least one selector and one seed")
        for s in self.selectors:
            if s not in SELECTORS:
                raise ConfigError(f"unknown selector '{s}'; available: "
                                  f"{', '.join(sorted(SELECTORS))}")
        if any(s != "full" for s in self.selectors) and not self.fractions:
            raise ConfigError("compare needs at least one fraction for the coreset selectors")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"fraction {f} must be in (0, 1]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {self.seeds} contain duplicates")
        if "pgd20" not in self.attacks:
            raise ConfigError("compare reports robust accuracy: attacks must include pgd20")
        return self


def plan(selectors: Sequence[str], fractions: Sequence[float], seeds: Sequence[int]) -> list[Job]:
    """Every run: each coreset selector at each fraction and seed; ``full`` once per seed."""
    jobs = []
    for sel in selectors:
        for seed in seeds:
            if sel == "full":
                jobs.append(Job("full", 1.0, int(seed)))
            else:
                jobs += [Job(sel, float(f), int(seed)) for f in fractions]
    return sorted(set(jobs), key=lambda j: (list(selectors).index(j.selector), j.fraction,
                                            j.seed))


# --------------------------------------------------------------------------------- one run
def job_config(spec: CompareSpec, job: Job) -> Any:
    """The run's config: the spec's config and overrides, then this job's selector/fraction/
    seed and folder (the only things that differ between runs)."""
    from rcs.config import load_config

    extra = [f"out_dir={spec.runs / job.name}", f"seed={job.seed}",
             f"selection.method={job.selector}", f"selection.fraction={job.fraction}"]
    if spec.device:
        extra.append(f"device={spec.device}")
    return load_config(spec.config, list(spec.overrides) + extra)


def _settings_hash(cfg: Any, spec: CompareSpec | None, drop_selector: bool = False) -> str:
    from rcs.config import to_dict

    d = to_dict(cfg)
    d.pop("out_dir", None)
    if drop_selector:
        d["selection"].pop("method", None)
    extra = {} if spec is None else {"ft": list(spec.finetune_overrides), "modes": spec.modes,
                                     "attacks": spec.attacks}
    blob = json.dumps({"cfg": d, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shared_warmup(spec: CompareSpec, job: Job, cfg: Any, log: Callable[[str], None] = print
                  ) -> Path | None:
    """The checkpoint at the end of the full-data warm-up shared by the coreset selectors of
    ``job.fraction`` and ``job.seed`` (trained on first use); None for ``full`` or no warm-up.

    Only ``selection.method`` differs between those runs, and it plays no part before the first
    selection (same init, split, batch order, augmentation draws and lr schedule), so the
    warm-up is computed once and each run resumes from it (rcs train resumes exactly).
    """
    import dataclasses

    from rcs.train.signals import StopFlag
    from rcs.train.trainer import Trainer

    warm = int(cfg.selection.warmup_epochs)
    if not spec.share_warmup or job.selector == "full" or warm < 1:
        return None
    wdir = spec.runs / "_warmup" / f"k{job.fraction:g}-s{job.seed}"
    key = _settings_hash(cfg, None, drop_selector=True)
    stamp = wdir / "warmup.json"
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if info.get("settings_hash") == key and (wdir / "checkpoint.pt").is_file():
            return wdir
        raise ConfigError(f"'{wdir}' holds a warm-up made with other settings; use another "
                          "--out (or --runs-dir) or delete that folder")
    log(f"[compare] shared warm-up for k={job.fraction:g}, seed {job.seed}: {warm} full-data "
        f"epoch(s) -> {wdir}")
    wdir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(dataclasses.replace(cfg, out_dir=str(wdir)), resume="auto")
    stop = StopFlag().install()
    try:
        while trainer.progress.epoch <= warm:
            trainer._epoch(trainer.progress.epoch, stop)
    finally:
        stop.restore()
    trainer.save()
    atomic_write_text(stamp, json.dumps({"settings_hash": key, "warmup_epochs": warm,
                                         "train_seconds": trainer.progress.train_seconds}))
    return wdir


def _cached(spec: CompareSpec, name: str, run_dir: Path, key: str,
            log: Callable[[str], None]) -> dict[str, Any] | None:
    """The finished row in ``run_dir`` (with any missing extra radius added), or None."""
    done = run_dir / RESULT
    if not done.is_file():
        return None
    row = json.loads(done.read_text())
    if row.get("settings_hash") != key:
        raise ConfigError(f"'{run_dir}' holds a run made with other settings; use another --out "
                          f"(or --runs-dir) or delete that folder")
    log(f"[compare] {name}: reusing {done}")
    if _add_extra_eps(spec, row, run_dir, log):
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
    row = _cached(spec, job.name, run_dir, key, log)
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

    from rcs.train.checkpoint import load_checkpoint
    from rcs.train.trainer import Trainer

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
        row = _cached(spec, name, run_dir, key, log)
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
        row = _cached(spec, name, run_dir, key, log)
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


# --------------------------------------------------------------------------------- driver
@dataclass
class CompareResult:
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    files: dict[str, Path]


def warmup_job(spec: CompareSpec, job: Job) -> str | None:
    """Train (or find) the shared warm-up of ``job`` (a callable for a SLURM array)."""
    warm = shared_warmup(spec, job, job_config(spec, job))
    return None if warm is None else str(warm)


def _slurm_rows(spec: CompareSpec, jobs: list[Job], log: Callable[[str], None]
                ) -> list[dict[str, Any]]:
    """Run the jobs as SLURM job arrays through ``rcs.launch.submit_array`` (the ``slurm.*``
    config keys; ``slurm.executor=local`` runs them as local processes): first one array of
    the shared warm-ups (one per fraction and seed), then one array of all runs."""
    try:
        from rcs.launch import submit_array
    except ImportError:
        raise NotAvailableError(
            "`rcs compare --slurm` needs rcs.launch.submit_array (SLURM launching), which is "
            "not available in this version; run without --slurm (sequentially), or submit "
            "`rcs compare` itself as one job") from None
    import dataclasses

    spec = dataclasses.replace(  # jobs may start in another folder: absolute paths
        spec, out=str(Path(spec.out).absolute()), runs_dir=str(spec.runs.absolute()),
        config=str(Path(spec.config).absolute()) if spec.config else None)
    cfg = job_config(spec, jobs[0])
    folder = Path(spec.out) / "slurm" / "%j"
    if spec.share_warmup and cfg.selection.warmup_epochs > 0:
        firsts = list({(j.fraction, j.seed): j for j in jobs if j.selector != "full"}.values())
        if firsts:
            log(f"[compare] SLURM: {len(firsts)} shared warm-up(s)")
            submit_array(warmup_job, [(spec, j) for j in firsts], cfg.slurm, folder=folder,
                         log=log, name="rcs-compare-warmup")
    log(f"[compare] SLURM: {len(jobs)} runs")
    return list(submit_array(run_job, [(spec, j) for j in jobs], cfg.slurm, folder=folder,
                             log=log, name="rcs-compare"))


def compare(spec: CompareSpec, slurm: bool = False, command: str = "",
            log: Callable[[str], None] = print) -> CompareResult:
    """Run (or reuse) every job of ``spec`` and write the table, JSON and plot into
    ``spec.out``."""
    from rcs.config import to_dict

    spec.validate()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(spec.selectors, spec.fractions, spec.seeds)
    log(f"[compare] {len(jobs)} runs: " + ", ".join(j.name for j in jobs))
    started = datetime.datetime.now(datetime.timezone.utc)
    if slurm:
        rows = _slurm_rows(spec, jobs, log)
    else:
        rows = [run_job(spec, j, log) for j in jobs]
    if spec.references:
        rows += [reference_row(spec, kind, seed, log) for kind in REFERENCES
                 for seed in spec.seeds]
    summary = summarize(rows)
    shared = to_dict(job_config(spec, jobs[0]))
    for k in ("out_dir", "seed"):
        shared.pop(k, None)
    shared["selection"].pop("method", None)
    shared["selection"].pop("fraction", None)
    pgd = rows[0].get("pgd") or vars(job_config(spec, jobs[0]).eval.pgd)
    ra_label = f"PGD-{pgd['steps']} @{eps_label(pgd['eps'])}"
    files = {"plot": plot(rows, summary, out / "robust_vs_time.png", ra_label)}
    record = {"command": command, "date": started.isoformat(timespec="seconds"),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"),
              "machine": machine(), "spec": asdict(spec), "shared_config": shared,
              "rows": rows, "summary": summary}
    files["json"] = atomic_write_text(out / "results.json",
                                      json.dumps(record, indent=2, sort_keys=True, default=str))
    table = markdown(rows, summary, spec.modes[0], f"RA {ra_label}")
    text = [f"# Equal-budget selector comparison ({spec.modes[0].upper()} + PGD-20)", "",
            f"Command: `{command}`" if command else "", "",
            f"Date: {record['date']}; machine: {record['machine']['cpu']}, "
            f"{record['machine']['cpu_count']} cores, torch {record['machine']['torch']}.", "",
            table, "", f"![robust accuracy vs pretraining time]({files['plot'].name})", ""]
    files["markdown"] = atomic_write_text(out / "results.md", "\n".join(text))
    log(f"[compare] results: {files['markdown']}, {files['json']}, {files['plot']}")
    return CompareResult(rows, summary, files)
