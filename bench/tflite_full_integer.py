"""Full-integer TFLite on every family: accuracy against float on all 206 coco-val-mini images, speed, memory.

For YOLOv5n and the trained YOLOv8n, YOLO26n (end-to-end, one-to-one head) and YOLOv10n (end-to-end) checkpoints, one
`yoloparity quantize --format tflite-int8 --calib-images N` process each (int8 input, one int8 output per raw head
map, decoded on the host; its JSON report has the drop on the held-out and on all images with paired bootstrap
intervals, its own peak RSS and the converter's). Then in this process, batch-1 latency at 640 with 2 threads,
interleaved: the full-integer file and its float32 TFLite (same conversion) on LiteRT, and the float model on ONNX
Runtime. Beside them, Ultralytics' own full-integer export of YOLOv8n (`yolov8n_full_integer_quant.tflite`),
validated and timed the same way (and its float TFLite, when the assets have one).

    .venv/bin/python bench/tflite_full_integer.py [--families yolov5n,yolov8n,yolo26n,yolov10n] [--calib-images 128]
        [--keep DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402
from int8_families import latencies  # noqa: E402  (median batch-1 ms, interleaved per backend)

MARK_BEGIN, MARK_END = "<!-- bench:tflite_full_integer:begin -->", "<!-- bench:tflite_full_integer:end -->"
FAMILIES = {"yolov5n": "yolov5n.pt", "yolov8n": "yolov8n-from-int8.pt", "yolo26n": "yolo26n-from-int8.pt",
            "yolov10n": "yolov10n-from-int8.pt"}
THEIRS = "yolov8n_full_integer_quant.tflite"


def quantize(model: str, data: str, out: str, report: str, calib: int) -> dict:
    """One `yoloparity quantize --format tflite-int8` process; its JSON report (exit 3 is a result too)."""
    cmd = [sys.executable, "-m", "yoloparity", "quantize", model, "--data", data, "--format", "tflite-int8",
           "--calib-images", str(calib), "--out", out, "--json", report, "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 3) or not os.path.exists(report):
        raise RuntimeError(f"{' '.join(cmd[3:])} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    print(f"{os.path.basename(out)}: {done.stdout.strip().splitlines()[-1]}", file=sys.stderr)
    return json.loads(Path(report).read_text())


def val_map(path: str, data: str) -> tuple[float, float]:
    """(mAP50-95, mAP50) of a TFLite file on LiteRT over the whole dataset (validation settings, square: static)."""
    import yoloparity

    report = yoloparity.val(path, data, backend="litert", metric="coco")
    return report.metrics.mAP50_95, report.metrics.mAP50


def family(name: str, pt: str, data: str, work: str, args) -> dict:
    from yoloparity.yolo_model import export_model

    os.makedirs(work, exist_ok=True)
    int8, report_path = os.path.join(work, f"{name}-int8.tflite"), os.path.join(work, f"{name}.json")
    float_onnx = os.path.join(work, f"{name}.onnx")
    if args.reuse and all(os.path.exists(p) for p in (int8, report_path, float_onnx)):
        report = json.loads(Path(report_path).read_text())  # an earlier run's conversion and accuracy, kept
        print(f"{name}: reusing {int8} and its report", file=sys.stderr)
    else:
        report = quantize(pt, data, int8, report_path, args.calib_images)
        float_onnx = export_model(pt, float_onnx, imgsz=640, dynamic=False)
    files = {"tflite int8": ("litert", int8), "tflite float": ("litert", report["float_output"]),
             "ort float": ("onnxruntime", float_onnx)}
    return {"family": name, "checkpoint": os.path.basename(pt), "report": report,
            "latency_ms": latencies(files, args.latency_repeats)}


def theirs(data: str, args) -> dict | None:
    """Ultralytics' own full-integer YOLOv8n export on the same images and timer."""
    path = assets_dir(ROOT) / "models" / THEIRS
    if not path.exists():
        return None
    result = {"file": THEIRS, "map": val_map(str(path), data)}
    floats = [p for p in (assets_dir(ROOT) / "models").glob("yolov8n_float32.tflite")]
    files = {"theirs int8": ("litert", str(path))}
    if floats:
        files["theirs float"] = ("litert", str(floats[0]))
        result["float_map"] = val_map(str(floats[0]), data)
    result["latency_ms"] = latencies(files, args.latency_repeats)
    return result


def table(results: list[dict], ultralytics: dict | None, args) -> list[str]:
    from yoloparity.environment import cpu_summary

    lines = [MARK_BEGIN, "## Full-integer TFLite on every family (raw head maps, each with its own int8 scale)", "",
             f"- command: `.venv/bin/python bench/tflite_full_integer.py --calib-images {args.calib_images} "
             f"--latency-repeats {args.latency_repeats}" + (" --keep DIR --reuse" if args.reuse else "") + "`"
             + ("; the files and accuracy figures are an earlier run's kept in DIR, the latency is this run's"
                if args.reuse else ""),
             f"- when: {datetime.date.today().isoformat()}; CPU: {cpu_summary()}, 2 threads",
             "- float = the float32 TFLite of the same conversion on LiteRT; drop = float − int8 mAP50-95 on the "
             f"held-out images and on all 206 coco-val-mini images (square 640, batch 1; {args.calib_images} of them "
             "calibrate: the dataset has no train split), with a paired bootstrap 95 % interval (200 resamples); "
             "latency: median ms at batch 1, interleaved per backend in one run", "",
             "| family | float mAP (all) | int8 mAP (all) | drop all 206 [95 %] | drop held-out [95 %] | int8 ms | "
             "x float TFLite | x float ORT | quantize peak RSS MB | converter peak RSS MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rep, lat = r["report"], r["latency_ms"]
        every = next(a for a in rep["accuracy"] if a["images"] == "all")
        held = next(a for a in rep["accuracy"] if a["images"] == "held-out")

        def cell(acc):
            iv = acc["interval"]
            return f"{iv['drop']:+.4f} [{iv['low']:+.4f}, {iv['high']:+.4f}]"

        f_all, q_all = every["interval"]["reference_map"], every["interval"]["other_map"]
        lines.append(f"| {r['family']} | {f_all:.4f} | {q_all:.4f} | {cell(every)} | {cell(held)} | "
                     f"{lat['tflite int8']:.1f} | {lat['tflite float'] / lat['tflite int8']:.2f}x | "
                     f"{lat['ort float'] / lat['tflite int8']:.2f}x | {rep['peak_rss_mb']:.0f} | "
                     f"{rep.get('converter_peak_rss_mb') or 0:.0f} |")
    if ultralytics:
        lat = ultralytics["latency_ms"]
        float_part = (f"its float TFLite {ultralytics['float_map'][0]:.4f}, "
                      if "float_map" in ultralytics else "")
        speed = (f", {lat['theirs float'] / lat['theirs int8']:.2f}x its float TFLite" if "theirs float" in lat else "")
        lines += ["", f"Ultralytics' own full-integer YOLOv8n export (`{ultralytics['file']}`, on the same LiteRT "
                      f"backend and validator, all 206 images): mAP50-95 {ultralytics['map'][0]:.4f} ({float_part}"
                      f"the float .pt 0.4018), {lat['theirs int8']:.1f} ms at batch 1{speed}."]
    lines += ["", "These rows replace the `full-integer TFLite (32 calib.)` rows of \"int8 on every family\" (one output "
                  "with one scale for boxes and scores, the converter's min/max ranges, 32 calibration images), which "
                  "are kept there as they were measured."]
    lines.append(MARK_END)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--keep", default=None, help="folder to keep the files in (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep DIR: a family whose files and report DIR already holds is not converted "
                             "again; its accuracy figures are that run's, the latency is measured again")
    parser.add_argument("--no-write", action="store_true", help="print the section without writing BENCHMARKS.md")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR (the folder of an earlier run)")
    assets = assets_dir(ROOT)
    data = str(assets / "coco-val-mini" / "data.yaml")
    work = args.keep or tempfile.mkdtemp(prefix="yoloparity-bench-tflite-")
    results = [family(name, str(assets / "models" / FAMILIES[name]), data, os.path.join(work, name), args)
               for name in args.families.split(",")]
    ultralytics = theirs(data, args)
    (ROOT / "bench" / "last_tflite_full_integer.json").write_text(json.dumps(
        {"families": results, "ultralytics": ultralytics}, indent=1, default=str))
    publish("\n".join(table(results, ultralytics, args)), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
