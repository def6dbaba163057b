"""The command line: one module per command (``add_parser`` and ``run``), thin over :mod:`yoloparity.api`.

Every user error ends as one line ``error: <file>: <problem>`` and exit 2; ``audit``/``compare`` exit 1 outside
tolerance and ``quantize`` 3 outside its budget.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import YoloParityError
from ..process_allocator import keep_large_buffers
from . import audit, bench, compare, env, export, predict, quantize, val
from .common import EXIT_BAD_INPUT

COMMANDS = (predict, export, val, audit, compare, quantize, bench, env)


def build_parser() -> argparse.ArgumentParser:
    """The ``yoloparity`` parser with one subcommand per module of this package."""
    parser = argparse.ArgumentParser(
        prog="yoloparity",
        description="YOLO detection that gives the answer you validated, on every backend and batch size.",
    )
    parser.add_argument("--version", action="version", version=f"yoloparity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; every :class:`YoloParityError` and bad value becomes one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args)
    except (YoloParityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``yoloparity`` program (console script and ``python -m yoloparity``): this process's allocator set to keep
    large buffers (:mod:`yoloparity.process_allocator`; ours, unlike a caller's of :func:`main`), then :func:`main`."""
    keep_large_buffers()
    sys.exit(main())


if __name__ == "__main__":
    entry()
