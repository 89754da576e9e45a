"""The ``bench`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``. Those modules
import only the standard library at the top; torch, mlflow, optuna and friends are imported inside the
handlers, so ``bench --help`` stays fast.

A handler returns an exit code (0 by default). A :class:`bench.errors.BenchError` becomes one line on stderr
and exit code 2; Ctrl-C becomes exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

# Order in which commands appear in `bench --help`.
_COMMAND_MODULES = ("run", "plan", "data", "train", "evaluate", "tricks", "report", "ui")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28)


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = argparse.ArgumentParser(
        prog="bench",
        formatter_class=_Formatter,
        description=(
            "Measure which training tricks help a 3D brain-tumour segmenter (BraTS), and by how much.\n"
            "Start with `bench run --grid` (a small synthetic experiment), then `bench report`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in _COMMAND_MODULES:  # a missing module is a broken install: let the import error say so
        importlib.import_module(f"bench.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bench.errors import BenchError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # `bench` alone, or `bench data` without its sub-command: show the relevant help.
        (getattr(args, "subparser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        rc = handler(args)
    except BenchError as exc:
        msg = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"bench: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
