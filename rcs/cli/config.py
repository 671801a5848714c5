"""Show the resolved config of a YAML file plus overrides, list every config key, or list the
configs shipped with rcs (usable by name from any folder: -c cifar10_acl_rcs).

  rcs config show --config configs/cifar10_acl_rcs.yaml --set train.epochs=5
  rcs config show -c tiny/cifar10_acl_rcs      # a shipped config by name
  rcs config keys            # key, default and meaning of every setting
  rcs config list            # the shipped configs: name and description
"""

from __future__ import annotations

import argparse

import yaml

from rcs.cli.common import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "keys", "list"],
                   help="show: print the resolved YAML; keys: list every key with its default "
                        "and meaning; list: the shipped configs (names for --config)")
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import resolve_config
    from rcs.config import describe_config, to_dict

    if args.action == "list":
        from rcs.config.resources import configs_dir, describe, list_configs

        rows = list_configs()
        if not rows:
            print("no shipped configs found (neither package data nor a source checkout)")
            return 1
        width = max(len(n) for n, _ in rows)
        for name, path in rows:
            print(f"{name:{width}s}  {describe(path)}")
        print(f"\n{len(rows)} configs in {configs_dir()}; use one by name: rcs train -c NAME")
        return 0
    if args.action == "keys":
        for key, default, doc in describe_config():
            print(f"{key:34s} {default:22s} {doc}")
        return 0
    print(yaml.safe_dump(to_dict(resolve_config(args)), sort_keys=False), end="")
    return 0
