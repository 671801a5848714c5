"""Evaluate an exported classifier: clean accuracy, PGD-20, AutoAttack, common corruptions.

The checkpoint is a classifier written by `rcs finetune` (<run>/finetune/<mode>/classifier.pt)
or a supervised (SAT) pretraining checkpoint. The test split of the fine-tuning dataset is used
unless --dataset / --set data.* say otherwise. Results go to eval.json and eval.md beside the
checkpoint (or in --out); a fine-tuning folder's results.json is updated too, so `rcs report`
shows later evaluations (e.g. AutoAttack run on a GPU node).

  rcs eval --checkpoint runs/x/finetune/slf/classifier.pt
  rcs eval --checkpoint runs/x/finetune/slf/classifier.pt --attacks autoattack --n-ex 1000
  rcs eval --checkpoint runs/x/finetune/aff/classifier.pt --attacks corruptions \\
           --corruptions-root /data/CIFAR-10-C
  rcs eval --checkpoint runs/x/finetune/slf/classifier.pt --attacks smoothing \\
           --sigma 0.25 --radii 0,0.25,0.5,0.75,1

`--attacks smoothing` certifies the Gaussian-smoothed classifier with Cohen et al.'s CERTIFY
(eval.smoothing_*: n0 100, n 100,000, alpha 0.001 on the first 500 test images by default) and
reports the certified accuracy at each L2 radius.
"""

from __future__ import annotations

import argparse

from rcs.cli.common import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", required=True,
                   help="fine-tuned classifier checkpoint (.pt) written by `rcs finetune`")
    p.add_argument("--attacks", default=None,
                   help="comma-separated: clean, pgd20, autoattack, corruptions, smoothing "
                        "(default: eval.attacks, i.e. clean,pgd20)")
    p.add_argument("--sigma", type=float, default=None,
                   help="smoothing: std of the Gaussian noise (sets eval.smoothing_sigma)")
    p.add_argument("--radii", default=None,
                   help="smoothing: comma-separated L2 radii (sets eval.smoothing_radii)")
    p.add_argument("--n-ex", type=int, default=None,
                   help="evaluate AutoAttack on the first N test images only (0 = all)")
    p.add_argument("--dataset", default=None,
                   help="evaluate on this dataset's test split (sets data.name; default: the "
                        "fine-tuning dataset)")
    p.add_argument("--corruptions-root", default=None, metavar="DIR",
                   help="folder of CIFAR-10-C / CIFAR-100-C files (<corruption>.npy, labels.npy)")


def eval_config(meta: dict, args: argparse.Namespace):
    from rcs.config import DataConfig, RunConfig, from_dict
    from rcs.config.loader import apply_overrides, read_yaml
    from rcs.finetune.runner import _merge

    data = dict(meta.get("config") or {})
    if args.dataset and args.dataset != data.get("data", {}).get("name"):
        from rcs.config import to_dict

        data["data"] = to_dict(DataConfig(name=args.dataset))
    if args.config:
        data = _merge(data, read_yaml(args.config))
    overrides = list(args.overrides or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.attacks is not None:
        overrides.append(f"eval.attacks=[{args.attacks}]")
    if args.n_ex is not None:
        overrides.append(f"eval.autoattack_n_ex={args.n_ex}")
    if args.corruptions_root is not None:
        overrides.append(f"eval.corruptions_root={args.corruptions_root}")
    if getattr(args, "sigma", None) is not None:
        overrides.append(f"eval.smoothing_sigma={args.sigma}")
    if getattr(args, "radii", None) is not None:
        overrides.append(f"eval.smoothing_radii=[{args.radii}]")
    return from_dict(RunConfig, apply_overrides(data, overrides)).validate()


def run(args: argparse.Namespace) -> int:
    import copy
    import json
    from pathlib import Path

    from rcs.cli.common import print_table
    from rcs.data import build_dataset
    from rcs.errors import DataError
    from rcs.evaluate import evaluate, headline
    from rcs.finetune import load_classifier
    from rcs.finetune.protocol import MODES
    from rcs.finetune.runner import check_test_labels, refresh_table
    from rcs.utils.device import resolve_device
    from rcs.utils.serialize import write_json

    ckpt = Path(args.checkpoint)
    clf, meta = load_classifier(ckpt)
    cfg = eval_config(meta, args)
    device = resolve_device(cfg.device)
    test_cfg = copy.deepcopy(cfg.data)
    test_cfg.limit = 0
    test_set = build_dataset(test_cfg, split="test")
    if test_set.labels is not None and test_set.num_classes > meta["num_classes"]:
        raise DataError(f"the test set has {test_set.num_classes} classes but the classifier "
                        f"predicts {meta['num_classes']}; evaluate on the fine-tuning dataset")
    check_test_labels(test_set, meta["num_classes"])
    print(f"[eval] {ckpt} on {test_set.name} ({len(test_set)} images): "
          f"{', '.join(cfg.eval.attacks)}")
    results = evaluate(clf, test_set, cfg.eval, cfg.eval.attacks, device)
    results["checkpoint"] = str(ckpt)
    results["headline"] = headline(results)
    rows = []
    for a in cfg.eval.attacks:
        r = results[a]
        acc = r.get("accuracy")
        rows.append({"evaluation": a, "accuracy (%)": "-" if acc is None else 100 * acc,
                     "n": r.get("n", r.get("n_per_severity", "-")),
                     "seconds": results["seconds"][a],
                     "note": r.get("message", "") if acc is None else ""})
    out = Path(args.out) if args.out else ckpt.parent
    out.mkdir(parents=True, exist_ok=True)
    print()
    text = print_table(rows)
    if "smoothing" in results:
        sm = results["smoothing"]
        print()
        text += "\n\n" + print_table([{"radius (L2)": r, "certified accuracy (%)": 100 * v,
                                        "sigma": sm["sigma"]}
                                       for r, v in sm["certified_accuracy"].items()])
    if "corruptions" in results and "per_severity" in results["corruptions"]:
        sev = results["corruptions"]["per_severity"]
        print()
        text += "\n\n" + print_table([{"severity": s, "accuracy (%)": 100 * v}
                                      for s, v in sev.items()])
    write_json(out / "eval.json", results)
    (out / "eval.md").write_text(text + "\n")
    ft_results = ckpt.parent / "results.json"
    if ft_results.is_file() and not args.out:
        merged = json.loads(ft_results.read_text())
        merged.setdefault("eval", {}).update({a: results[a] for a in cfg.eval.attacks})
        merged["eval"].setdefault("seconds", {}).update(results["seconds"])
        merged["headline"] = headline(merged["eval"])
        write_json(ft_results, merged)
        if (ckpt.parent.parent / "results.md").is_file() and merged.get("mode") in MODES:
            refresh_table(ckpt.parent.parent, merged)  # the fine-tuning table shows it too
    print(f"\n[eval] results written to {out / 'eval.json'} and {out / 'eval.md'}")
    return 0
