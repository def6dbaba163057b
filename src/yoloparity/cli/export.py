"""``yoloparity export``: a checkpoint to ONNX with its spec in the metadata."""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="export a .pt checkpoint to ONNX with its spec in the metadata",
                       description="Writes ONNX whose output0 is the raw head tensor; the ModelSpec (names, strides, "
                       "head format, letterbox rule) is embedded so every backend decodes it the same way.")
    e.add_argument("model", help="a .pt checkpoint or an official name like yolov5n.pt")
    e.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    e.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    e.add_argument("--imgsz", type=int, nargs="+", default=[640], metavar="N", help="export size: N or H W (default: 640)")
    e.add_argument("--batch", type=int, default=1, help="static batch size when not --dynamic (default: 1)")
    e.add_argument("--head", default=None, choices=["one2one", "one2many"],
                   help="end-to-end checkpoints: which head the file computes (default one2one: the one-to-one head's "
                        "output before the top-k, which every backend ranks with the same NumPy top-k)")
    e.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model import export_model

    out = export_model(args.model, args.out, imgsz=args.imgsz, dynamic=args.dynamic, opset=args.opset, batch=args.batch,
                       head=args.head)
    print(f"exported {args.model} -> {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0
