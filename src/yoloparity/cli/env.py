"""``yoloparity env``: the environment fingerprint."""

from __future__ import annotations

import argparse
import json

from ..environment import fingerprint
from ..report.console import format_table


def add_parser(sub) -> None:
    """Register ``yoloparity env``."""
    v = sub.add_parser("env", help="print the environment fingerprint that explains numeric differences")
    v.add_argument("--json", action="store_true", help="JSON instead of a table")
    v.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Print the environment fingerprint as a table (or JSON)."""
    fp = fingerprint()
    if args.json:
        print(json.dumps(fp, indent=1))
    else:
        print(format_table(["what", "value"], [[k, v] for k, v in fp.items()]))
    return 0
