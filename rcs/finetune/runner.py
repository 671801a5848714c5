"""Fine-tune a pretraining checkpoint in one or more modes, evaluate, and write the results.

Layout written under ``out`` (by default ``<run>/finetune``, or ``<run>/finetune-<dataset>``
when transferring to another dataset)::

    config.yaml                 the resolved fine-tuning config
    <mode>/classifier.pt        the exported single-BN classifier (weights only, atomic)
    <mode>/metrics.jsonl        one record per epoch (loss, lr, seconds)
    <mode>/state.pt             epoch-end state; a re-run resumes from it
    <mode>/results.json         settings, timings, loss curve, evaluation, headline SA / RA
    results.json, results.md    every mode of this call in one table

Each mode starts again from the pretrained checkpoint with its own settings (no carry-over).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rcs.config import DataConfig, RunConfig, from_dict, save_config, to_dict
from rcs.config.loader import apply_overrides, read_yaml
from rcs.data import build_dataset
from rcs.errors import ConfigError, DataError, warn
from rcs.finetune.aff import finetune_aff
from rcs.finetune.labels import label_fraction_subset
from rcs.finetune.linear import finetune_linear
from rcs.finetune.protocol import MODES, resolve_mode
from rcs.models.pretrained import Pretrained, save_classifier
from rcs.utils import run_guard
from rcs.utils.atomic import atomic_write_text
from rcs.utils.device import resolve_device
from rcs.utils.metrics import MetricsLogger, use_loggers


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def finetune_config(pre: Pretrained, config_path: str | None = None,
                    overrides: list[str] | None = None, dataset: str | None = None) -> RunConfig:
    """The pretraining run's config, with the downstream data and the user's settings on top.

    ``dataset`` (when it differs from the pretraining data) replaces the data section by that
    dataset's defaults (set ``data.root`` with an override). The labelled ``train`` split is used
    unless ``data.split`` is overridden. Then the YAML file, then the ``--set`` overrides.
    """
    data = to_dict(pre.cfg)
    if dataset and dataset != pre.cfg.data.name:
        data["data"] = to_dict(DataConfig(name=dataset))
    data["data"]["split"] = "train"
    if config_path:
        data = _merge(data, read_yaml(config_path))
    data = apply_overrides(data, list(overrides or []))
    cfg = from_dict(RunConfig, data).validate()
    check_model_unchanged(pre, cfg)
    return cfg


def check_model_unchanged(pre: Pretrained, cfg: RunConfig) -> None:
    """The fine-tuned network is the checkpoint's: a ``model.*`` setting (other than
    ``num_classes``, which comes from the data) that differs from it would be ignored yet
    recorded in ``config.yaml``, so it is refused."""
    mine, theirs = to_dict(cfg.model), to_dict(pre.cfg.model)
    diff = [f"model.{k}={mine[k]!r} (checkpoint: {theirs[k]!r})" for k in mine
            if k != "num_classes" and mine[k] != theirs.get(k)]
    if diff:
        raise ConfigError(f"{'; '.join(diff)}: fine-tuning uses the architecture of the "
                          f"pretrained checkpoint '{pre.path}', so model settings cannot change "
                          "here; remove them from --set / the config (pretrain another model to "
                          "change it)")


def default_out(pre: Pretrained, cfg: RunConfig) -> Path:
    """``<run>/finetune``, ``<run>/finetune-<dataset>`` for another dataset, with
    ``-labels<fraction>`` appended when only a fraction of the labels is used."""
    same = cfg.data.name == pre.cfg.data.name and cfg.data.root == pre.cfg.data.root
    name = "finetune" if same else f"finetune-{cfg.data.name}"
    if cfg.finetune.label_fraction < 1.0:
        name += f"-labels{cfg.finetune.label_fraction:g}"
    return pre.run_dir / name


def resolve_branch(cfg: RunConfig, pre: Pretrained, log: Callable[[str], None] = print) -> str:
    """Set ``cfg.finetune.branch`` to a branch the pretrained model has: the configured one, or
    the only one of a single-BN model (RoCL, BYORL, Tikhonov); ConfigError otherwise."""
    names = list(pre.cfg.model.bn_names)
    if cfg.finetune.branch not in names:
        if len(names) != 1:
            raise ConfigError(f"finetune.branch={cfg.finetune.branch!r} is not a BN branch of the "
                              f"pretrained model ({names}); set finetune.branch to one of them")
        log(f"[finetune] single-BN model: exporting its only branch {names[0]!r} "
            f"(finetune.branch={cfg.finetune.branch!r} does not exist there)")
        cfg.finetune.branch = names[0]
    return cfg.finetune.branch


def _pretrain_info(pre: Pretrained) -> dict[str, Any]:
    info: dict[str, Any] = {"checkpoint": str(pre.path), "method": pre.method,
                            "selector": pre.cfg.selection.method,
                            "fraction": pre.cfg.selection.fraction, "complete": pre.complete}
    summary = pre.run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        for k in ("train_seconds", "select_seconds", "epochs", "device", "world_size"):
            info[k] = s.get(k)
    return info


def run_finetune(pre: Pretrained, cfg: RunConfig, modes: list[str], out: Path,
                 attacks: list[str] | None = None, resume: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Fine-tune ``modes`` in order, evaluate each exported classifier on the test split with
    ``attacks`` (default ``cfg.eval.attacks``; ``[]`` skips evaluation), write the files."""
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"fine-tuning mode {m!r} is not one of {', '.join(MODES)}")
    attacks = cfg.eval.attacks if attacks is None else attacks
    if "corruptions" in attacks and not cfg.eval.corruptions_root:  # fail before training
        raise ConfigError("corruption evaluation needs eval.corruptions_root (a folder with "
                          "CIFAR-10-C style <corruption>.npy + labels.npy files)")
    resolve_branch(cfg, pre, log)
    resolve_device(cfg.device)  # a bad device fails before the data is read
    torch.manual_seed(cfg.finetune.seed)
    out = Path(out)
    train_set = build_dataset(cfg.data, split=cfg.data.split)
    num_classes = check_finetune_labels(train_set, cfg.data.split)
    cfg.model.num_classes = num_classes  # what the classifier gets, recorded as such
    fraction = cfg.finetune.label_fraction
    if fraction < 1.0:
        n_keep = max(1, int(round(fraction * len(train_set))))
        if n_keep < num_classes:
            raise ConfigError(
                f"finetune.label_fraction={fraction:g} keeps {n_keep} of {len(train_set)} "
                f"images, fewer than one per class ({num_classes} classes); use at least "
                f"{_ceil2(num_classes / len(train_set)):g} (--label-fraction)")
        indices = label_fraction_subset(train_set.labels, fraction, cfg.finetune.seed)
        log(f"[finetune] label fraction {fraction:g}: {len(indices)} of {len(train_set)} "
            "labelled images (class-balanced)")
    else:
        indices = torch.arange(len(train_set)).numpy()
    test_set = None
    if attacks:
        test_cfg = copy.deepcopy(cfg.data)
        test_cfg.limit = 0  # data.limit cuts the training split; eval.limit cuts the test split
        test_set = build_dataset(test_cfg, split="test")
        check_test_labels(test_set, num_classes)
    run_guard.lock_run(out)
    try:
        results = _run_modes(pre, cfg, modes, out, attacks, resume, log, train_set, indices,
                             num_classes, test_set)
    finally:
        run_guard.unlock_run(out)
    return results


def _ceil2(x: float) -> float:
    """``x`` rounded up to two significant digits."""
    scale = 10 ** (1 - math.floor(math.log10(x)))
    return math.ceil(x * scale - 1e-9) / scale


def check_finetune_labels(train_set: Any, split: str) -> int:
    """Fine-tuning needs a class label on every training image; returns the class count."""
    if train_set.labels is None:
        raise DataError(f"dataset {train_set.name!r} (split {split!r}) has no labels; "
                        "fine-tuning needs a labelled split (set data.split=train)")
    neg = int((train_set.labels < 0).sum())
    if neg:
        raise DataError(f"{neg} of {len(train_set)} training images of {train_set.name!r} "
                        f"(split {split!r}) have no label (-1); fine-tuning needs a labelled "
                        "split (set data.split=train) or labels 0..C-1 on every image")
    return train_set.num_classes


def check_test_labels(test_set: Any, num_classes: int) -> None:
    """The test labels must be classes the classifier has."""
    if test_set.labels is None:
        raise DataError(f"test split {test_set.name!r} has no labels; evaluation needs them "
                        "(or skip it with --attacks none)")
    if len(test_set.labels) and (int(test_set.labels.min()) < 0
                                 or int(test_set.labels.max()) >= num_classes):
        raise DataError(f"test split {test_set.name!r} has labels outside 0..{num_classes - 1} "
                        f"(min {int(test_set.labels.min())}, max {int(test_set.labels.max())}), "
                        f"but the training split has {num_classes} classes; the two splits "
                        "must share the class ids")
    if test_set.num_classes < num_classes:
        warn(f"the training split has {num_classes} classes but the test split only "
             f"{test_set.num_classes}; check the labels of the training split")


def _run_modes(pre: Pretrained, cfg: RunConfig, modes: list[str], out: Path,
               attacks: list[str], resume: bool, log: Callable[[str], None], train_set: Any,
               indices: Any, num_classes: int, test_set: Any) -> dict[str, dict[str, Any]]:
    from rcs.evaluate import evaluate, headline

    device = resolve_device(cfg.device)
    save_config(cfg, out / "config.yaml")
    fraction = cfg.finetune.label_fraction
    fingerprint = pre.fingerprint()
    all_results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        settings = resolve_mode(cfg.finetune, mode, pre.method, cfg.data.name,
                                image_size=train_set.image_shape[0])
        mdir = out / mode
        log(f"[finetune] {mode.upper()} on {train_set.name} ({len(indices)} images, "
            f"{num_classes} classes): {settings.epochs} epochs, lr {settings.lr}, batch "
            f"{settings.batch_size}, milestones {list(settings.milestones)} -> {mdir}")
        with use_loggers(cfg, run_name=f"{cfg.name}-finetune-{mode}"):
            if mode == "aff":
                clf, fit, _ = finetune_aff(pre, cfg, settings, train_set, indices, num_classes,
                                           device, mdir, resume)
            else:
                clf, fit = finetune_linear(pre, cfg, settings, train_set, indices, num_classes,
                                           device, mdir, resume)
        res: dict[str, Any] = {
            "mode": mode, "dataset": cfg.data.name, "train_split": train_set.name,
            "label_fraction": fraction, "n_train": len(indices), "num_classes": num_classes,
            "branch": cfg.finetune.branch,
            "settings": settings.as_dict(), "finetune_seconds": fit.seconds,
            "final_loss": fit.final_loss, "losses": fit.losses, "resumed_from": fit.resumed_from,
            "pretrain": _pretrain_info(pre), "pretrained_fingerprint": fingerprint,
            "model_selection": "last epoch"}
        save_classifier(mdir / "classifier.pt", clf, cfg.model, num_classes,
                        {"mode": mode, "branch": cfg.finetune.branch, "config": to_dict(cfg)})
        if attacks:
            res["eval"] = evaluate(clf, test_set, cfg.eval, attacks, device, log=log)
            res["headline"] = headline(res["eval"])
            logger = MetricsLogger.from_config(mdir / "metrics.jsonl", cfg,
                                               run_name=f"{cfg.name}-eval-{mode}")
            logger.log(event="eval", mode=mode, **res["headline"], results=res["eval"])
            logger.close()
        atomic_write_text(mdir / "results.json",
                          json.dumps(res, indent=2, sort_keys=True, default=str))
        all_results[mode] = res
    refresh_table(out, all_results, log)
    return all_results


def refresh_table(out: Path, results: dict[str, dict[str, Any]] | dict[str, Any],
                  log: Callable[[str], None] = print) -> None:
    """Write ``out/results.{json,md}``: ``results`` (one mode's result, or {mode: result})
    merged with the other modes fine-tuned in ``out`` (see :func:`merged_results`)."""
    if "mode" in results and "settings" in results:
        results = {results["mode"]: results}
    table = merged_results(out, results, log)
    atomic_write_text(out / "results.json",
                      json.dumps(table, indent=2, sort_keys=True, default=str))
    atomic_write_text(out / "results.md", results_table(table) + "\n")


def merged_results(out: Path, results: dict[str, dict[str, Any]],
                   log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """This call's ``results`` plus the other modes already fine-tuned in ``out`` from the same
    pretrained weights, dataset and label fraction (their ``<mode>/results.json``), in mode
    order: a later ``--mode aff`` adds its row to SLF and ALF instead of replacing them."""
    merged = dict(results)
    ref = next(iter(results.values()), None)
    for mode in MODES:
        f = out / mode / "results.json"
        if mode in merged or ref is None or not f.is_file():
            continue
        try:
            old = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        keys = ("dataset", "label_fraction", "num_classes")
        same = all(old.get(k) == ref.get(k) for k in keys)
        fp, ref_fp = old.get("pretrained_fingerprint"), ref.get("pretrained_fingerprint")
        same = same and (fp == ref_fp if fp is not None and ref_fp is not None else
                         (old.get("pretrain") or {}).get("checkpoint")
                         == (ref.get("pretrain") or {}).get("checkpoint"))
        if same:
            merged[mode] = old
        else:
            log(f"[finetune] {f} is from another pretrained model or dataset; it is left out of "
                f"{out / 'results.md'}")
    return {m: merged[m] for m in MODES if m in merged}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per mode with SA, PGD-20 RA, AutoAttack RA, corruption acc."""
    from rcs.utils.tables import markdown_table

    return markdown_table(
        ["mode", "epochs", "lr", "SA (%)", "RA PGD-20 (%)", "RA AutoAttack (%)", "CA (%)",
         "fine-tune s"],
        [[mode.upper(), r["settings"]["epochs"], r["settings"]["lr"],
          *(_fmt(r.get("headline", {}).get(k)) for k in ("SA", "RA_pgd20", "RA_autoattack",
                                                         "CA")),
          f"{r['finetune_seconds']:.1f}"] for mode, r in results.items()])
