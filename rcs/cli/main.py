"""The ``rcs`` command: parses arguments and dispatches to one module per sub-command.

Every command takes ``--threads N`` (or ``RCS_THREADS``) and prints its thread count in a
header line on stderr before it starts.

Errors raised on purpose (``rcs.errors.RCSError``) are printed as one clear line without a
traceback and exit with status 2; ``RCS_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from rcs import __version__

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

LAUNCHABLE = ("train", "select", "finetune", "eval")
"""Commands that take the SLURM option set (``--slurm``; see ``rcs submit --help``)."""

EPILOG = """\
examples:
  rcs demo                                   # the whole pipeline on built-in synthetic data
  rcs train --config configs/tiny/cifar10_acl_rcs.yaml --set train.epochs=5
  rcs select --checkpoint runs/x/checkpoint.pt --fraction 0.2 --out coreset.npz
  rcs config keys                            # every config key with its default and meaning
Run `rcs <command> --help` for the options of a command.
"""


def add_config_args(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    """The options every config-driven command shares: --config, --set, --out, --device."""
    p.add_argument("--config", "-c", required=config_required, metavar="YAML",
                   help="YAML config file (see configs/); defaults are used for missing keys")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override one config key with a dotted path, e.g. --set train.epochs=5 "
                        "--set train.attack.eps=8/255 (repeatable; `rcs config keys` lists keys)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder of the run (overrides out_dir); the resolved config, "
                        "metrics.jsonl and checkpoints are written there")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="auto | cpu | cuda | cuda:N (overrides the config's device)")


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads of this process (see :func:`rcs.utils.threads`)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of this process (default: $RCS_THREADS, else "
                        "$OMP_NUM_THREADS, else every core this process may use). Running "
                        "several rcs processes on one machine, give each cores/processes")


def catalog_text() -> str:
    """The pretraining methods (``--method``) and coreset selectors (``--selector``), wrapped."""
    from rcs.methods.base import method_names
    from rcs.selection.base import SELECTORS, _load_plugins

    _load_plugins()
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
            from rcs.launch.cli import add_slurm_args

            add_slurm_args(p)
        p.set_defaults(_run=mod.run)
    return parser


def _show_warnings(command: str) -> None:
    """Print rcs warnings (legal but suspicious values) as one ``warning:`` line each."""
    import warnings

    from rcs.errors import RCSWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, RCSWarning):
            print(f"rcs {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", RCSWarning)


def main(argv: list[str] | None = None) -> int:
    from rcs.errors import RCSError
    from rcs.utils.atomic import storage_error

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    _show_warnings(args.command)
    try:
        from rcs.utils.threads import configure_threads, threads_header

        threads = getattr(args, "threads", None)
        configure_threads(threads if threads is not None else args.threads_all)
        if args.command != "config":  # `rcs config show` prints YAML only
            print(f"[rcs {args.command}] {threads_header()}", file=sys.stderr)
        result = None
        if args.command in LAUNCHABLE:
            from rcs.launch.cli import dispatch

            result = dispatch(args, argv)  # None: no --slurm, run here
        if result is None:
            result = args._run(args)
    except RCSError as e:
        if os.environ.get("RCS_DEBUG"):
            raise
        text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())  # one line
        print(f"rcs {args.command}: error: {text}", file=sys.stderr)
        return 2
    except OSError as e:  # a write outside the atomic writer (a metrics line, a folder)
        err = storage_error(e, e.filename or "?", "file")
        if err is None or os.environ.get("RCS_DEBUG"):
            raise
        print(f"rcs {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rcs {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
