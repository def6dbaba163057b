"""``yoloparity bench``: speed, memory and accuracy per backend, precision and batch."""

from __future__ import annotations

import argparse

from ..api import bench
from ..benchmarking.measure import BENCH_PRECISIONS
from ..io.atomic import write_text
from ..report.console import BENCH_HEADERS, bench_rows, format_bench
from ..report.html import bench_html
from .common import (
    add_imgsz_option,
    add_json_option,
    add_threads_option,
    comma_list,
    emit_json,
    progress_bar,
    square_imgsz,
    stderr_log,
)


def add_parser(sub) -> None:
    """Register ``yoloparity bench``."""
    b = sub.add_parser(
        "bench", help="speed, memory and accuracy side by side across backends, precisions and batch sizes",
        description="Benchmark MODEL under every combination of --backends x --precisions x --batch. Per configuration: "
        "images/s and ms/image (median and spread over --repeats, warm-up excluded), the decode / letterbox / "
        "inference / NMS split, peak resident memory (each configuration runs in its own process), model file size, "
        "mAP50-95 on --data, and the share of the machine's peak: model GFLOPs (counted from the ONNX graph) x images/s "
        "over the GFLOP/s of a matrix-multiply probe on the same backend and precision, measured in the same run. "
        "int8 models come from `quantize` (needs --data). A configuration that cannot run here is listed with the reason.")
    b.add_argument("model", help=".pt checkpoint, .onnx, or .tflite (litert only)")
    b.add_argument("--data", default=None, help="dataset .yaml: mAP50-95 per configuration, calibration for int8, and images")
    b.add_argument("--source", default=None, help="images to time (default: the --data images)")
    b.add_argument("--backends", default="torch,onnxruntime,openvino", help="comma list (default: torch,onnxruntime,openvino)")
    b.add_argument("--precisions", default="fp32", help=f"comma list of {', '.join(BENCH_PRECISIONS)} (default: fp32): a "
                   "backend's own setting where it has one, else a file of that precision made here (fp16 converted, "
                   "int8 by quantize from --data)")
    b.add_argument("--batch", default="1,8", help="comma list of batch sizes (default: 1,8)")
    add_imgsz_option(b, "inference size", "the model's own: the size a .pt was trained at, a static file's input, "
                                          "else 640")
    b.add_argument("--images", type=int, default=16, help="images per timed repeat (default: 16)")
    b.add_argument("--val-images", type=int, default=None, help="use only the first N --data images for mAP (default: all)")
    b.add_argument("--warmup", type=int, default=1, help="untimed passes before the repeats (default: 1)")
    b.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    add_threads_option(b, "threads per configuration")
    b.add_argument("--device", default="cpu", help="cpu or cuda:N for torch/onnxruntime (default: cpu)")
    b.add_argument("--no-recommend", dest="recommend", action="store_false",
                   help="skip the recommendation (by default every configuration is audited against the reference on 4 "
                        "images and, with --data, its drop gets a paired bootstrap interval; the fastest with no real "
                        "difference and its interval inside 0.005 mAP50-95 is named: float or int8, any backend)")
    add_json_option(b, "the results")
    b.add_argument("--html", metavar="FILE", default=None, help="write an HTML page with a speed-vs-accuracy plot")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Benchmark, print the table, write the JSON and HTML asked for."""
    options = dict(backends=comma_list(args.backends), precisions=comma_list(args.precisions),
                   batches=comma_list(args.batch, int), imgsz=square_imgsz(args.imgsz, "bench"), warmup=args.warmup, repeats=args.repeats,
                   threads=args.threads, images=args.images, source=args.source, data=args.data,
                   val_images=args.val_images, device=args.device, recommend=args.recommend)
    total = len(options["backends"]) * len(options["precisions"]) * len(options["batches"])
    with progress_bar(total, args.quiet, "bench") as bar:
        report = bench(args.model, progress=bar.update, log=stderr_log(args.quiet), **options).to_dict()
    if args.html:
        write_text(args.html, bench_html(report, bench_rows(report), BENCH_HEADERS))
    if emit_json(args.json_out, report):
        return 0
    print(format_bench(report))
    return 0
