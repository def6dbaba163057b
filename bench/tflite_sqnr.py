"""Where a full-integer TFLite file's error comes from: :mod:`yoloparity.quantization.tflite_error` on more images.

``yoloparity quantize --format tflite-int8`` reports the same figures on 4 held-out images; this runs them on the
last ``--images`` coco-val-mini images (letterboxed square, as quantize reads them) for any file it wrote, beside
its ``X-float32.tflite``, and lists more layers. BENCHMARKS.md, "Where the full-integer error comes from".

    .venv/bin/python bench/tflite_sqnr.py X.tflite [--float X-float32.tflite] [--images 8] [--top 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks_md import assets_dir  # noqa: E402


def main() -> int:
    """The command line of the module docstring."""
    from yoloparity.data.sources import read_image
    from yoloparity.pipeline.letterbox import letterbox, to_input
    from yoloparity.quantization.tflite_error import int8_error

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("int8", help="the full-integer file (yoloparity quantize --format tflite-int8)")
    parser.add_argument("--float", dest="float_path", help="the float32 file of the same conversion "
                        "(default: INT8's name with -float32, as quantize writes it)")
    parser.add_argument("--images", type=int, default=8, help="coco-val-mini images, the last N (default 8)")
    parser.add_argument("--size", type=int, default=640, help="the file's input size (default 640)")
    parser.add_argument("--top", type=int, default=12, help="layers listed by the SQNR they lose (default 12)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    float_path = args.float_path or os.path.splitext(args.int8)[0] + "-float32.tflite"
    for path in (args.int8, float_path):
        if not os.path.exists(path):
            parser.error(f"{path}: no such file")
    paths = sorted(str(p) for p in (assets_dir(ROOT) / "coco-val-mini" / "images").glob("*.jpg"))[-args.images:]
    inputs = [to_input(letterbox(read_image(p), args.size, "square")[0])[None] for p in paths]
    result = int8_error(args.int8, float_path, inputs, top=args.top)
    print(f"{args.int8} against {float_path}, {len(inputs)} images, {result['tensors_compared']} tensors compared")
    print("| output | shape | SQNR dB | score rms error (float score > 0.05) |\n| --- | --- | ---: | ---: |")
    for m in result["maps"]:
        print(f"| {m['output']} | {'x'.join(map(str, m['shape']))} | {m['sqnr_db']:.2f} | {m.get('score_rms_error', '')} |")
    print("\nthe layers that lose the most SQNR (the first, fed by the image itself, not listed):")
    for r in result["worst_layers"]:
        print(f"  op {r['position']:4d} {r['op']:18s} {-r['loss_db']:+6.2f} dB -> {r['sqnr_db']:6.2f} dB  {r['output'][-60:]}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "int8": args.int8, "float": float_path}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
