"""Show the resolved config of a YAML file plus overrides, or list every config key.

  rcs config show --config configs/cifar10_acl_rcs.yaml --set train.epochs=5
  rcs config keys            # key, default and meaning of every setting
"""

from __future__ import annotations

import argparse

import yaml

from rcs.cli.main import add_config_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "keys"],
                   help="show: print the resolved YAML; keys: list every key with its default")
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    from rcs.cli.common import resolve_config
    from rcs.config import describe_config, to_dict

    if args.action == "keys":
        for key, default, doc in describe_config():
            print(f"{key:34s} {default:22s} {doc}")
        return 0
    print(yaml.safe_dump(to_dict(resolve_config(args)), sort_keys=False), end="")
    return 0
