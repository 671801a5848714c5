"""The ``rcs`` argument parser: one sub-command per module of :data:`COMMANDS`, each module
giving ``add_arguments(parser)`` and ``run(args)``; the launchable ones also get the SLURM option
set (:mod:`rcs.cli.slurm_flags`). A new command is one module plus one line in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import textwrap

from rcs import __version__
from rcs.cli.common import add_threads_arg
from rcs.cli.slurm_flags import LAUNCHABLE, add_slurm_args

COMMANDS = {
    "train": ("rcs.cli.train", "pretrain an encoder (ACL/AIR/DynACL/SAT) with a coreset schedule"),
    "select": ("rcs.cli.select", "compute a coreset (RCS or a baseline) from a checkpoint"),
    "coreset": ("rcs.cli.coreset", "look at a coreset file: size, class histogram, overlap"),
    "finetune": ("rcs.cli.finetune", "fine-tune a pretrained encoder (SLF / ALF / AFF)"),
    "eval": ("rcs.cli.evaluate", "evaluate a classifier: clean, PGD-20, AutoAttack, corruptions"),
    "export": ("rcs.cli.export", "write an encoder or classifier as state_dict + safetensors + "
                                 "JSON sidecar"),
    "submit": ("rcs.cli.submit", "send a train/select/finetune/eval job to SLURM via submitit"),
    "report": ("rcs.cli.report", "collect results of runs into a table and plots"),
    "compare": ("rcs.cli.compare", "compare selectors at an equal budget (pretrain, SLF, PGD-20)"),
    "demo": ("rcs.cli.demo", "run the whole pipeline on a small built-in dataset"),
    "config": ("rcs.cli.config", "show the resolved config or list every config key"),
}

EPILOG = """\
examples:
  rcs demo                                   # the whole pipeline on built-in synthetic data
  rcs train --config configs/tiny/cifar10_acl_rcs.yaml --set train.epochs=5
  rcs select --checkpoint runs/x/checkpoint.pt --fraction 0.2 --out coreset.npz
  rcs config keys                            # every config key with its default and meaning
Run `rcs <command> --help` for the options of a command.
"""


def catalog_text() -> str:
    """The pretraining methods (``--method``) and coreset selectors (``--selector``), wrapped."""
    from rcs.methods.registry import method_names
    from rcs.selection.base import SELECTORS, load_selectors

    load_selectors()
    wrap = textwrap.TextWrapper(width=96, initial_indent="  ", subsequent_indent="  ")
    return ("pretraining methods (rcs train --method / train.method; `rcs train --help` gives "
            "references):\n" + wrap.fill(", ".join(method_names())) + "\n"
            "coreset selectors (rcs train|select --selector / selection.method):\n"
            + wrap.fill(", ".join(sorted(SELECTORS))) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcs",
        description="rcs: robustness-aware coreset selection for fast adversarial contrastive "
                    "pretraining (select, train, fine-tune, evaluate, export, launch on SLURM).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=catalog_text() + "\n" + EPILOG)
    parser.add_argument("--version", action="version", version=f"rcs {__version__}")
    parser.add_argument("--threads", type=int, default=None, metavar="N", dest="threads_all",
                        help="CPU threads (also an option of every command; default "
                             "$RCS_THREADS, else $OMP_NUM_THREADS, else all cores)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=textwrap.dedent(
            mod.__doc__ or help_text), formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_threads_arg(p)
        if name in LAUNCHABLE:  # the `--slurm` option set: submit instead of running here
            add_slurm_args(p)
        p.set_defaults(_run=mod.run)
    return parser
