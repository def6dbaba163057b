"""``yoloparity quantize``: int8 with calibration and an accuracy budget."""

from __future__ import annotations

import argparse

from ..api import quantize
from ..quantization.formats import CALIB_METHODS, DEFAULT_FORMAT, FORMATS, QUANTIZE_FORMATS, TFLITE_INPUTS
from ..report.console import format_quant_report
from .common import (
    EXIT_OK,
    EXIT_OVER_BUDGET,
    add_imgsz_option,
    add_json_option,
    add_threads_option,
    emit_json,
    progress_bar,
    square_imgsz,
    stderr_log,
)


def add_parser(sub) -> None:
    """Register ``yoloparity quantize``."""
    q = sub.add_parser(
        "quantize", help="int8 quantization with calibration and an accuracy budget proven by mAP",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantize MODEL (.pt or float .onnx) to int8. Calibration images come from DATA by a deterministic "
        "choice, disjoint from the images that measure the accuracy drop (when the dataset has enough). With "
        "--exclude auto the head's decode tail (found by graph structure) stays float; while the mAP50-95 drop "
        "exceeds --max-drop the most quantization-sensitive nodes return to float, step by step.\n\n"
        "Every drop is reported on the held-out images and on all images, each with a paired bootstrap 95% interval "
        "(float and int8 scored on the same resampled image sets). The verdict is 'within' only when the held-out "
        "interval's upper end is inside --max-drop; 'unresolved' when the interval straddles it (the report says "
        "about how many images would resolve it); 'over' when its lower end is above.\n\n"
        "Calibration streams: each image's activations are merged into running ranges or histograms and dropped, so "
        "memory does not grow with --calib-images; each dataset image is read and letterboxed once.\n\n"
        "exit status: 0 within the budget; 3 not shown within it (over, or not resolvable with the images given; the "
        "best model reached is still written, and the report says what it kept float); 2 bad input.")
    q.add_argument("model", help=".pt checkpoint (exported at a static imgsz) or float .onnx")
    q.add_argument("--data", required=True, help="dataset .yaml (YOLO) giving calibration and validation images")
    q.add_argument("--format", dest="fmt", default=DEFAULT_FORMAT, choices=FORMATS,
                   help="; ".join(f"{f.name}: {f.summary}" for f in QUANTIZE_FORMATS.values()))
    q.add_argument("--calib-images", type=int, default=128, help="calibration images (default: 128)")
    q.add_argument("--tflite-input", default=TFLITE_INPUTS[0], choices=TFLITE_INPUTS,
                   help="tflite-int8: the full-integer file's input type (default int8; uint8 for accelerators and "
                        "runtimes that want unsigned input). Its outputs are int8, one per raw head map")
    q.add_argument("--calib-method", default=None, choices=CALIB_METHODS,
                   help="how activation ranges are chosen. onnx-qdq: percentile (default, 99.999th of |x|: chosen by "
                        "measurement on YOLOv5n, YOLOv8n, YOLO26n and YOLOv10n, see BENCHMARKS.md), minmax, entropy. "
                        "tflite-int8: percentile (default: the converter's min/max ranges narrowed to the 99.999 "
                        "percentile of the calibration images), mse (each tensor's range of least clipping + "
                        "rounding error), minmax (the converter's own)")
    q.add_argument("--exclude", default="auto", metavar="auto|none|NAME,...",
                   help="nodes kept float: auto (the head's decode tail), none, or node names (default: auto)")
    q.add_argument("--max-drop", type=float, default=0.005, help="allowed mAP50-95 drop, held out and on all images (default: 0.005)")
    q.add_argument("--val-images", type=int, default=None, help="images that measure the drop (default: all not used for calibration)")
    q.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="paired bootstrap resamples behind each drop interval (default: 200; 0: no interval)")
    q.add_argument("--max-steps", type=int, default=6, help="accuracy-control steps at most (default: 6; 0: measure only)")
    q.add_argument("--revert-group", type=int, default=4, help="sensitive tensors returned to float per step (default: 4)")
    q.add_argument("--saturation", default="fix", choices=["fix", "report"],
                   help="int16 pair-sum saturation of x86 CPUs without VNNI (AVX2), emulated on calibration images: "
                        "fix (default) reports per layer and writes every convolution with pair-safe weight scales that "
                        "cannot saturate, so the int8 model computes the same on every x86 CPU; report only reports")
    add_imgsz_option(q, "static input size for a .pt (square)", "the size it was trained at, else 640; an .onnx keeps its own")
    add_threads_option(q, "CPU threads for validation and latency")
    q.add_argument("--out", default=None, help="output file (default: MODEL-int8.onnx in the current folder)")
    add_json_option(q, "the report")
    q.add_argument("--quiet", action="store_true", help="no progress output")
    q.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Quantize, print the accuracy steps; exit 3 when the int8 model is outside the accuracy budget."""
    report = quantize(args.model, args.data, args.out, fmt=args.fmt, calib_images=args.calib_images,
                      calib_method=args.calib_method, exclude=args.exclude, max_drop=args.max_drop,
                      val_images=args.val_images, imgsz=square_imgsz(args.imgsz, "quantize"), threads=args.threads, max_steps=args.max_steps,
                      revert_group=args.revert_group, saturation=args.saturation, bootstrap=args.bootstrap,
                      tflite_input=args.tflite_input, log=stderr_log(args.quiet),
                      progress_factory=lambda total, desc: progress_bar(total, args.quiet, desc))
    if not emit_json(args.json_out, report.to_dict()):
        print(format_quant_report(report))
    return EXIT_OK if report.within_budget else EXIT_OVER_BUDGET
