"""``yoloparity export``: a checkpoint to ONNX or TFLite with its spec in the metadata."""

from __future__ import annotations

import argparse
import os

from ..types import HEAD_BRANCHES
from .common import add_imgsz_option, imgsz_values, square_imgsz

FORMATS = ("onnx", "tflite")


def add_parser(sub) -> None:
    """Register ``yoloparity export``."""
    e = sub.add_parser("export", help="export a .pt checkpoint to ONNX or float TFLite with its spec in the metadata",
                       description="Writes ONNX whose output0 is the raw head tensor, or (--format tflite) a float32 "
                       "TFLite file converted by onnx2tf in its own environment (scripts/setup_tflite.sh) whose output "
                       "is the head with normalized boxes; the ModelSpec (names, strides, head format, letterbox rule) "
                       "is embedded so every backend decodes it the same way. End-to-end heads (YOLOv10, YOLO26) are "
                       "exported without their top-k: every backend ranks them with the same NumPy top-k.")
    e.add_argument("model", help="a .pt checkpoint or an official name like yolov5n.pt")
    e.add_argument("--out", required=True, metavar="FILE", help="the .onnx or .tflite file to write")
    e.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                   help="onnx or tflite (default: from the --out suffix, else onnx)")
    e.add_argument("--dynamic", action="store_true", help="onnx: dynamic batch, height and width")
    e.add_argument("--opset", type=int, default=17, help="onnx: ONNX opset (default: 17)")
    add_imgsz_option(e, "export size (tflite: square)", "the size the checkpoint was trained at, else 640")
    e.add_argument("--batch", type=int, default=1, help="onnx: static batch size when not --dynamic (default: 1)")
    e.add_argument("--head", dest="head_branch", default=None, choices=list(HEAD_BRANCHES),
                   help="end-to-end checkpoints: which head the file computes (default one2one: the one-to-one head's "
                        "output before the top-k, which every backend ranks with the same NumPy top-k)")
    e.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export a checkpoint to ONNX or float TFLite and print where it was written."""
    import sys

    fmt = args.fmt or ("tflite" if args.out.lower().endswith(".tflite") else "onnx")
    if fmt == "tflite":
        from ..quantization.tflite_export import export_tflite

        if args.dynamic or args.batch != 1:
            raise ValueError("a TFLite file is static, batch 1 and square: give one --imgsz, no --dynamic or --batch")
        out = export_tflite(args.model, args.out, imgsz=square_imgsz(args.imgsz, "export --format tflite"), head_branch=args.head_branch,
                            log=lambda line: print(line, file=sys.stderr))
    else:
        from ..yolo_model import export_model

        out = export_model(args.model, args.out, imgsz=imgsz_values(args.imgsz), dynamic=args.dynamic, opset=args.opset,
                           batch=args.batch, head_branch=args.head_branch)
    print(f"exported {args.model} -> {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0
