"""int8 quantization figures for BENCHMARKS.md: accuracy drop, size and speed-up in one run.

Runs ``yoloparity quantize`` on YOLOv5n with coco-val-mini three ways (``--exclude none``,
``--exclude auto`` with the default budget, and a tight budget (0.001) that needs accuracy control),
then validates the third-party int8 TFLite files on the LiteRT backend.

    .venv/bin/python bench/quantize_int8.py [--calib-images 32] [--latency-repeats 60] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- bench:quantize_int8:begin -->", "<!-- bench:quantize_int8:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--latency-repeats", type=int, default=60)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    assets = assets_dir(ROOT)
    data = str(assets / "coco-val-mini" / "data.yaml")
    model = str(assets / "models" / "yolov5n.pt")

    from yoloparity.environment import cpu_summary
    from yoloparity.quantization.runner import QuantizeOptions, run_quantize

    runs = [("--exclude none --max-steps 0", QuantizeOptions(exclude="none", max_steps=0)),
            ("--exclude auto (default budget 0.01)", QuantizeOptions()),
            ("--exclude auto --max-drop 0.001", QuantizeOptions(max_drop=0.001)),
            ("--format tflite-int8 (float = float32 TFLite, LiteRT)", QuantizeOptions(fmt="tflite-int8"))]
    rows = []
    with __import__("tempfile").TemporaryDirectory() as tmp:
        for label, opts in runs:
            opts.calib_images, opts.latency_repeats = args.calib_images, args.latency_repeats
            start = time.perf_counter()
            suffix = ".tflite" if opts.fmt == "tflite-int8" else ".onnx"
            r = run_quantize(model, data, os.path.join(tmp, "q" + suffix), opts, log=lambda line: print(line, file=sys.stderr))
            rows.append((label, r, time.perf_counter() - start))
    lines = [MARK_BEGIN, "## int8 with an accuracy budget: ONNX Runtime QDQ and full-integer TFLite", "",
             f"- command: `.venv/bin/python bench/quantize_int8.py --calib-images {args.calib_images} "
             f"--latency-repeats {args.latency_repeats}` (each row is one `yoloparity quantize` run)",
             f"- when: {datetime.date.today().isoformat()}; CPU: {cpu_summary()}, {os.cpu_count()} cores; YOLOv5n "
             f"exported static 1x3x640x640; {args.calib_images} calibration images, the drop measured on the other "
             f"{rows[0][1].val_images} coco-val-mini images (square 640, batch 1)",
             "- latency: batch 1, 2 threads, median of the per-inference times, float and int8 interleaved in one run",
             "", "| run | float mAP50-95 | int8 mAP50-95 | drop | nodes kept float | int8 detections | size MB float → int8 "
                 "| ms float | ms int8 | speed-up | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for label, r, secs in rows:
        lines.append(f"| {label} | {r.float_map50_95:.4f} | {r.int8_map50_95:.4f} | {r.drop:+.4f} | "
                     f"{len(r.kept_float)} ({len(r.excluded_structural)} structural) | {r.int8_detections} | "
                     f"{r.float_size_bytes / 1e6:.2f} → {r.int8_size_bytes / 1e6:.2f} | {r.float_latency_ms:.1f} | "
                     f"{r.int8_latency_ms:.1f} | **{r.speedup:.2f}x** | {secs:.0f} |")
    notes = [n for _, r, _ in rows for n in r.notes]
    lines += [""] + [f"- note ({label}): {n}" for (label, r, _) in rows for n in r.notes] if notes else [""]
    lines.append(MARK_END)
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
