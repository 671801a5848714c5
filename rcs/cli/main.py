"""The ``rcs`` command: parses arguments and dispatches to one module per sub-command.

Every command takes ``--threads N`` (or ``RCS_THREADS``) and prints its thread count in a
header line on stderr before it starts.

Errors raised on purpose (``rcs.errors.RCSError``) are printed as one clear line without a
traceback and exit with status 2; ``RCS_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

from rcs.cli.parser import COMMANDS, build_parser
from rcs.cli.slurm_flags import LAUNCHABLE

__all__ = ["COMMANDS", "build_parser", "main"]

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
            from rcs.cli.slurm_options import dispatch

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
