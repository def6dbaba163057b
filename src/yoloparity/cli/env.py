"""``yoloparity env``: the environment fingerprint."""

from __future__ import annotations

import argparse


from ..environment import fingerprint, openvino_default_precision
from ..report.console import format_table
from .common import add_json_option, emit_json


def add_parser(sub) -> None:
    """Register ``yoloparity env``."""
    v = sub.add_parser("env", help="print the environment fingerprint that explains numeric differences")
    add_json_option(v, "the fingerprint")
    v.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Print the environment fingerprint, with the precision OpenVINO's CPU plugin picks here when not told, as a
    table (or JSON)."""
    fp = {**fingerprint(), "openvino.cpu_default_precision": openvino_default_precision()}
    if not emit_json(args.json_out, fp):
        print(format_table(["what", "value"], [[k, v] for k, v in fp.items()]))
    return 0
