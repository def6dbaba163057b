"""``yoloparity audit``: one model under several configurations, compared and judged."""

from __future__ import annotations

import argparse
import sys

from ..api import audit
from ..backends.registry import BACKENDS
from ..io.atomic import write_text
from ..report.console import format_audit
from ..report.html import audit_html
from .common import EXIT_FAIL, EXIT_OK, add_json_option, emit_json, progress_bar


def add_parser(sub) -> None:
    """Register ``yoloparity audit``."""
    a = sub.add_parser(
        "audit", help="run one model under several configurations and judge how the detections differ",
        description="Runs MODEL on SOURCE under each --config (key=value,... over backend, device, precision, batch, "
        "threads, imgsz, mode, model; or values alone: torch:fp32, onnxruntime:fp16:cuda:0,batch=16) and compares every config with the reference (the first --config, or --reference): "
        "per-class counts side by side, matched boxes (IoU, score deltas), raw-output differences, each one-sided "
        "detection classified borderline (explained by the measured numeric noise at a threshold) or real, and the first "
        "stage where an image diverges. Exit 0 within tolerance, 1 outside, 2 on errors. With no --config: torch batch 1 "
        "(reference) vs torch batch 16 and onnxruntime batch 1 and 16 (plus CUDA fp32/fp16 where present).")
    a.add_argument("model", help="a .pt checkpoint or an official name")
    a.add_argument("source", nargs="+", help="image file(s), folder(s) or glob(s)")
    a.add_argument("--config", action="append", metavar="SPEC", help="a configuration, e.g. backend=onnxruntime,batch=16 or onnxruntime:fp16")
    a.add_argument("--reference", metavar="SPEC", help="the reference configuration (default: the first --config)")
    a.add_argument("--repeat", type=int, default=1, help="run every config N times and check run-to-run identity")
    settings = "; ".join(f"{b.name}: {b.determinism}" for b in BACKENDS.values() if b.determinism)
    a.add_argument("--deterministic", action="store_true",
                   help=f"apply every determinism setting the backends offer ({settings})")
    a.add_argument("--tolerance", action="append", metavar="KEY=VALUE",
                   help="real=0, map_delta=0.005, score_noise=0.001, box_noise=0.5")
    a.add_argument("--data", metavar="DATA", help="a data.yaml (or image folder with --annotations): also compare mAP "
                   "on the audited images it labels (tolerance map_delta)")
    a.add_argument("--annotations", metavar="JSON", help="COCO json for --data")
    a.add_argument("--layers", action="store_true", help="where an image diverges in model numerics, run both models as ONNX "
                   "with every intermediate tensor exposed and name the first layer that differs")
    add_json_option(a, "the report (top-level 'verdict')")
    a.add_argument("--html", metavar="FILE", help="write one self-contained HTML page: tables, plots, images that differ")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Audit, print the table, write the JSON and HTML asked for; exit 1 when the verdict is fail."""
    from ..auditing.compare import Tolerances
    from ..data.sources import resolve_source

    source = args.source if len(args.source) > 1 else args.source[0]
    with progress_bar(len(resolve_source(source)), args.quiet, "audit") as bar:
        report = audit(args.model, source, args.config or [], args.reference, repeat=args.repeat,
                       deterministic=args.deterministic, tolerances=Tolerances.parse(args.tolerance), layers=args.layers,
                       data=args.data, annotations=args.annotations, gallery=6 if args.html else 0, progress=bar.update,
                       log=lambda line: bar.write(line, file=sys.stderr))
    if args.html:
        write_text(args.html, audit_html(report))
    if not emit_json(args.json_out, report.report):
        print(format_audit(report.report.to_dict()))
    return EXIT_OK if report.verdict == "pass" else EXIT_FAIL
