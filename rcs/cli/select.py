"""Compute a coreset from a pretraining checkpoint and write it as .npz + .json.

The model and data settings come from the checkpoint's saved config unless --config is given;
--set overrides either. The validation split U (data.val_fraction) is never selectable.

  rcs select --checkpoint runs/x/checkpoint.pt --fraction 0.2 --out coreset.npz
  rcs select --checkpoint runs/x/checkpoint.pt --selector random --fraction 0.1 --out rand.npz
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `rcs train`")
    p.add_argument("--config", "-c", default=None,
                   help="YAML config (default: the config saved in the checkpoint)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a config key, e.g. --set selection.rounds=10")
    p.add_argument("--selector", default=None,
                   help="selector name (sets selection.method; default rcs): rcs | random | full "
                        "| the baselines (`rcs --help` lists them)")
    p.add_argument("--method", default=None, metavar="SELECTOR",
                   help="deprecated alias of --selector (prints a warning)")
    p.add_argument("--fraction", type=float, default=None, help="coreset fraction k in (0, 1]")
    p.add_argument("--out", required=True, help="output coreset file (.npz; a .json goes beside)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--epoch", type=int, default=0, help="epoch number recorded in the coreset "
                   "(also seeds the augmentation/attack draws)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    import numpy as np

    from rcs.cli.common import print_table
    from rcs.config import from_dict, load_config
    from rcs.config.loader import apply_overrides
    from rcs.config.schema import RunConfig
    from rcs.config.sections import upgrade_saved_config
    from rcs.data import Augment, build_dataset, train_val_split
    from rcs.models import build_model
    from rcs.selection.base import SelectionContext, build_selector
    from rcs.utils.checkpoint_io import load_checkpoint, load_state_dict_strict
    from rcs.utils.device import resolve_device
    from rcs.utils.metrics import MetricsLogger, coreset_fields

    if args.method is not None:
        if args.selector is not None and args.selector != args.method:
            from rcs.errors import ConfigError

            raise ConfigError(f"--selector {args.selector} and --method {args.method} disagree; "
                              "use --selector only (--method is its deprecated old name)")
        print("rcs select: warning: --method is deprecated and will be removed; use --selector "
              "(as `rcs train` does)", file=sys.stderr)
        args.selector = args.selector or args.method
    state = load_checkpoint(args.checkpoint)
    _check_pretraining(state, args.checkpoint, args.config)
    extra = [f"selection.method={args.selector or 'rcs'}"]
    if args.fraction is not None:
        extra.append(f"selection.fraction={args.fraction}")
    if args.device:
        extra.append(f"device={args.device}")
    if args.config:
        cfg = load_config(args.config, args.overrides + extra)
    else:
        data = apply_overrides(upgrade_saved_config(json.loads(state["config_json"])),
                               args.overrides + extra)
        cfg = from_dict(RunConfig, data).validate()
    device = resolve_device(cfg.device)
    dataset = build_dataset(cfg.data)
    candidates, val = train_val_split(len(dataset), cfg.data.val_fraction, cfg.seed)
    model = build_model(cfg.model, classifier=any(k.startswith("classifier.")
                                                  for k in state["model"])).to(device)
    load_state_dict_strict(model, state["model"])
    selector = build_selector(cfg.selection.method, cfg)
    ctx = SelectionContext(dataset=dataset, candidates=candidates, val=val,
                           fraction=cfg.selection.fraction,
                           seed=cfg.seed + cfg.selection.seed, model=model,
                           augment=Augment(cfg.augment), device=device, cfg=cfg, epoch=args.epoch)
    t0 = time.perf_counter()
    coreset = selector.select(ctx)
    seconds = time.perf_counter() - t0
    coreset.meta["checkpoint"] = str(args.checkpoint)
    path = coreset.save(args.out)
    log_path = path.with_name(path.stem + ".metrics.jsonl")
    logger = MetricsLogger.from_config(log_path, cfg, run_name=f"{cfg.name}-select-{path.stem}")
    logger.log(event="selection", epoch=args.epoch, method=selector.name, size=len(coreset),
               seconds=seconds, timings=coreset.meta.get("timings", {}),
               **coreset_fields(coreset, dataset))
    logger.close()
    rows = [{"selector": cfg.selection.method, "size": len(coreset),
             "fraction": len(coreset) / len(candidates), "candidates": len(candidates),
             "val": len(val)} | {f"t_{k}": v for k, v in coreset.meta.get("timings", {}).items()}]
    print_table(rows)
    if dataset.labels is not None:
        hist = np.bincount(np.asarray(dataset.labels)[coreset.indices],
                           minlength=dataset.num_classes)
        print("class histogram: " + " ".join(f"{c}:{n}" for c, n in enumerate(hist)))
    print(f"coreset written to {path} (+ {path.with_suffix('.json').name}); metrics in "
          f"{log_path.name}")
    return 0


def _check_pretraining(state: dict, path: str, config: str | None) -> None:
    """`rcs select` needs a pretraining checkpoint (model weights and, without --config, the run
    config saved by `rcs train`)."""
    from rcs.errors import CheckpointError
    from rcs.models.pretrained import CLASSIFIER_KIND

    if state.get("kind") == CLASSIFIER_KIND:
        raise CheckpointError(f"'{path}' is a fine-tuned classifier; `rcs select` needs the "
                              "pretraining checkpoint of `rcs train` (e.g. runs/NAME/checkpoint.pt,"
                              " two folders above finetune/<mode>/classifier.pt)")
    if "model" not in state:
        raise CheckpointError(f"checkpoint '{path}' holds no model weights ('model'); pass a "
                              "checkpoint written by `rcs train`")
    if not config and not state.get("config_json"):
        raise CheckpointError(f"checkpoint '{path}' holds no run config (config_json); pass the "
                              "config it was trained with: --config YAML")
