"""``yoloparity compare``: the audit's comparison between two run records."""

from __future__ import annotations

import argparse

from ..api import compare
from ..report.console import format_table
from .common import EXIT_FAIL, EXIT_OK, add_json_option, emit_json


def add_parser(sub) -> None:
    """Register ``yoloparity compare``."""
    c = sub.add_parser("compare", help="compare two run records (e.g. from two machines)",
                       description="The audit's comparison between two records written by `predict --save-record`: per-class "
                       "counts, matched boxes, one-sided detections classified borderline or real, and every setting and "
                       "environment entry that differs. Exit 0 within tolerance, 1 outside, 2 on errors.")
    c.add_argument("a", help="the reference record")
    c.add_argument("b", help="the record to compare with it")
    c.add_argument("--tolerance", action="append", metavar="KEY=VALUE", help="real=0, score_noise=0.001")
    add_json_option(c, "the comparison (top-level 'verdict')")
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Compare two run records, print what differs (settings, environment, detections); exit 1 on fail."""
    from ..auditing.compare import Tolerances

    report = compare(args.a, args.b, Tolerances.parse(args.tolerance))
    code = EXIT_OK if report.verdict.passed else EXIT_FAIL
    if emit_json(args.json_out, report):
        return code
    summary = report.summary
    changed = [[k, v["reference"], v["config"]] for k, v in summary.per_class.items() if v["reference"] != v["config"]]
    print(f"{report.images} images, {summary.images_differing} differing: {summary.real} real, "
          f"{summary.borderline} borderline differences ({report.raw_images_compared} images with both raw outputs)")
    if changed:
        print(format_table(["class", "A", "B"], changed, title="Detections per class where the records differ"))
    for loc in summary.localization[:10]:
        print(f"{loc['file']}: {loc['stage']}: {loc['detail']}")
    for line in report.settings_differences + report.environment_differences:
        print(f"differs: {line}")
    print(f"verdict: {report.verdict.status.upper()}")
    return code
