"""int8 on every family: our three int8 formats on four trained checkpoints, accuracy with intervals, speed, memory.

For YOLOv5n and the trained YOLOv8n, YOLO26n (end-to-end) and YOLOv10n (end-to-end) checkpoints, each quantize run
is a separate `yoloparity quantize` process (its peak RSS is its own):

* `--format onnx-qdq` with the defaults (percentile calibration on 128 images, pair-safe scales, accuracy control
  within 0.005 on the held-out and on all images);
* `--format openvino-int8` (NNCF's `quantize` with our structural ignored scope; `--max-steps 0` here: NNCF's
  accuracy control is measured separately, see the notes);
* `--format tflite-int8` (full integer through onnx2tf; `--tflite-calib-images`, 32 by default: the converter holds
  every calibration image in memory);

then in this process, on the images read once: our QDQ file on OpenVINO (its mAP and interval against the float
model on OpenVINO), and batch-1 latency of every file, interleaved per backend, 2 threads. The drop of each int8 file
is against the float model on its own backend, on the held-out images and on all 206, each with a paired bootstrap
95 % interval. A memory row repeats the YOLOv8n QDQ run at 32 and 128 calibration images (`--max-steps 0`).

    .venv/bin/python bench/int8_families.py [--families yolov5n,yolov8n,yolo26n,yolov10n] [--no-tflite] [--no-write]
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

MARK_BEGIN, MARK_END = "<!-- bench:int8_families:begin -->", "<!-- bench:int8_families:end -->"
FAMILIES = {"yolov5n": "yolov5n.pt", "yolov8n": "yolov8n-from-int8.pt", "yolo26n": "yolo26n-from-int8.pt",
            "yolov10n": "yolov10n-from-int8.pt"}


def quantize(model: str, data: str, out: str, report: str, *flags: str) -> dict:
    """One `yoloparity quantize` process; its JSON report (exit 3, outside the budget, is a result too)."""
    cmd = [sys.executable, "-m", "yoloparity", "quantize", model, "--data", data, "--out", out, "--json", report,
           "--quiet", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 3) or not os.path.exists(report):
        raise RuntimeError(f"{' '.join(cmd[3:])} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    print(f"{os.path.basename(out)}: {done.stdout.strip().splitlines()[-1]}", file=sys.stderr)
    return json.loads(Path(report).read_text())


def interval(report: dict, which: str) -> dict:
    return next(a for a in report["accuracy"] if a["images"] == which)


def drop_cell(acc: dict) -> str:
    iv = acc["interval"]
    return f"{iv['drop']:+.4f} [{iv['low']:+.4f}, {iv['high']:+.4f}]"


def qdq_on_openvino(model: str, data: str, qdq: str, float_onnx: str, calib: int) -> dict:
    """Our QDQ file run on OpenVINO, scored like the formats' own runs (same images, same split)."""
    from yoloparity.data.datasets import load_dataset
    from yoloparity.yolo_model import load_model
    from yoloparity.quantization.evaluation import compare_scores, score_model
    from yoloparity.quantization.image_set import load_quant_images

    with load_model(float_onnx, backend="openvino") as m:
        spec = m.spec
    images = load_quant_images(load_dataset(data), data, spec, 640, calib, None)
    f = score_model(float_onnx, images, 2, backend="openvino")
    q = score_model(qdq, images, 2, backend="openvino")
    every = [i.entry.id for i in images.measured]
    return {"held-out": compare_scores(f, q, images.held_out_ids(), "held-out", 0.005, 200).__dict__,
            "all": compare_scores(f, q, every, "all", 0.005, 200).__dict__,
            "float_map": f.map(images.held_out_ids())[0], "int8_map": q.map(images.held_out_ids())[0]}


def latencies(files: dict[str, tuple[str, str]], repeats: int) -> dict[str, float]:
    """Median batch-1 ms of each (backend, file), interleaved within each backend, 2 threads."""
    import numpy as np

    from yoloparity.quantization.evaluation import measure_latency

    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    out = {}
    for backend in dict.fromkeys(b for b, _ in files.values()):
        chosen = {k: path for k, (b, path) in files.items() if b == backend}
        out.update(measure_latency(chosen, x, 2, repeats, backend=backend))
    return out


def family(name: str, pt: str, data: str, tmp: str, args) -> dict:
    from yoloparity.yolo_model import export_model
    from yoloparity.quantization.onnx_qdq import prepare_float_model

    work = os.path.join(tmp, name)
    os.makedirs(work, exist_ok=True)
    float_onnx = prepare_float_model(export_model(pt, os.path.join(work, "float.onnx"), imgsz=640, dynamic=False), work).path
    result = {"family": name, "checkpoint": os.path.basename(pt)}
    qdq = os.path.join(work, "qdq.onnx")
    result["qdq"] = quantize(pt, data, qdq, os.path.join(work, "qdq.json"), "--calib-images", str(args.calib_images))
    result["qdq_on_openvino"] = qdq_on_openvino(pt, data, qdq, float_onnx, args.calib_images)
    files = {"ort float": ("onnxruntime", float_onnx), "ort int8": ("onnxruntime", qdq),
             "ov float": ("openvino", float_onnx), "ov qdq": ("openvino", qdq)}
    if not args.no_nncf:
        nncf_xml = os.path.join(work, "nncf.xml")
        result["nncf"] = quantize(pt, data, nncf_xml, os.path.join(work, "nncf.json"), "--format", "openvino-int8",
                                  "--calib-images", str(args.calib_images), "--max-steps", "0")
        files["ov nncf"] = ("openvino", nncf_xml)
    if not args.no_tflite:
        tfl = os.path.join(work, "int8.tflite")
        result["tflite"] = quantize(pt, data, tfl, os.path.join(work, "tflite.json"), "--format", "tflite-int8",
                                    "--calib-images", str(args.tflite_calib_images))
        files["litert float"] = ("litert", result["tflite"]["float_output"])
        files["litert int8"] = ("litert", tfl)
    result["latency_ms"] = latencies(files, args.latency_repeats)
    return result


def memory_rows(data: str, tmp: str) -> list[tuple[int, float]]:
    """Peak RSS of the YOLOv8n QDQ run at 32 and 128 calibration images (calibration only: --max-steps 0)."""
    pt = str(assets_dir(ROOT) / "models" / FAMILIES["yolov8n"])
    rows = []
    for n in (32, 128):
        r = quantize(pt, data, os.path.join(tmp, f"mem{n}.onnx"), os.path.join(tmp, f"mem{n}.json"),
                     "--calib-images", str(n), "--max-steps", "0", "--bootstrap", "0")
        rows.append((n, r["peak_rss_mb"]))
    return rows


def table(results: list[dict], memory: list[tuple[int, float]], args) -> list[str]:
    from yoloparity.environment import cpu_summary

    lines = [MARK_BEGIN, "## int8 on every family: accuracy with intervals, speed, memory", "",
             f"- command: `.venv/bin/python bench/int8_families.py --calib-images {args.calib_images} "
             f"--tflite-calib-images {args.tflite_calib_images} --latency-repeats {args.latency_repeats}`",
             f"- when: {datetime.date.today().isoformat()}; CPU: {cpu_summary()}, 2 threads",
             "- drop = float − int8 mAP50-95 against the float model on the same backend, on the held-out images "
             "(78 at 128 calibration images) and on all 206 coco-val-mini images (square 640, batch 1), with a paired "
             "bootstrap 95 % interval (200 resamples of the images); latency: median ms at batch 1, float and int8 "
             "interleaved per backend in one run; speed-up against the float model on ONNX Runtime", "",
             "| family | int8 file | backend | float mAP | int8 mAP | drop held-out [95 %] | drop all 206 [95 %] | "
             "kept float | ms | x ORT float | x own float | peak RSS MB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lat = r["latency_ms"]
        base = lat["ort float"]

        def row(label, backend, rep, own_float, held, every, float_map, int8_map, kept, key, rss):
            lines.append(f"| {r['family']} | {label} | {backend} | {float_map:.4f} | {int8_map:.4f} | {drop_cell(held)} | "
                         f"{drop_cell(every)} | {kept} | {lat[key]:.1f} | {base / lat[key]:.2f}x | "
                         f"{lat[own_float] / lat[key]:.2f}x | {rss} |")

        lines.append(f"| {r['family']} | float ONNX | onnxruntime | | | | | | {base:.1f} | 1.00x | | |")
        q = r["qdq"]
        row("QDQ (`quantize`)", "onnxruntime", q, "ort float", interval(q, "held-out"), interval(q, "all"),
            q["float_map50_95"], q["int8_map50_95"], len(q["kept_float"]), "ort int8", f"{q['peak_rss_mb']:.0f}")
        ov = r["qdq_on_openvino"]
        lines.append(f"| {r['family']} | float ONNX | openvino | | | | | | {lat['ov float']:.1f} | "
                     f"{base / lat['ov float']:.2f}x | | |")
        row("QDQ (`quantize`)", "openvino", None, "ov float", ov["held-out"], ov["all"], ov["float_map"], ov["int8_map"],
            len(q["kept_float"]), "ov qdq", "")
        if "nncf" in r:
            n = r["nncf"]
            row("NNCF IR (`--format openvino-int8`)", "openvino", n, "ov float", interval(n, "held-out"),
                interval(n, "all"), n["float_map50_95"], n["int8_map50_95"], len(n["kept_float"]), "ov nncf",
                f"{n['peak_rss_mb']:.0f}")
        if "tflite" in r:
            t = r["tflite"]
            lines.append(f"| {r['family']} | float32 TFLite | litert | | | | | | {lat['litert float']:.1f} | "
                         f"{base / lat['litert float']:.2f}x | | |")
            row(f"full-integer TFLite ({t['calib_images']} calib.)", "litert", t, "litert float",
                interval(t, "held-out"), interval(t, "all"), t["float_map50_95"], t["int8_map50_95"], 0,
                "litert int8", f"{t['peak_rss_mb']:.0f}")
    if memory:
        (n1, m1), (n2, m2) = memory
        lines += ["", f"Memory (YOLOv8n, QDQ, `--max-steps 0`): peak RSS {m1:.0f} MB at {n1} calibration images, "
                      f"{m2:.0f} MB at {n2} (x{m2 / m1:.2f}): calibration streams image by image."]
    lines.append(MARK_END)
    return lines


def merge(args) -> int:
    """The table from earlier runs' JSON: families in first-seen order, each from the last file that has it."""
    families: dict[str, dict] = {}
    memory: list = []
    for path in args.merge:
        saved = json.loads(Path(path).read_text())
        for r in saved["families"]:
            families[r["family"]] = r
        memory = saved.get("memory") or memory
    publish("\n".join(table(list(families.values()), [tuple(m) for m in memory], args)), ROOT, MARK_BEGIN, MARK_END,
            write=not args.no_write)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--tflite-calib-images", type=int, default=32)
    parser.add_argument("--latency-repeats", type=int, default=40)
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--no-nncf", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", default=None, help="write every figure as JSON")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="only rebuild the table from earlier --json files (a family in a later file replaces it)")
    args = parser.parse_args()
    if args.merge:
        return merge(args)
    assets = assets_dir(ROOT)
    data = str(assets / "coco-val-mini" / "data.yaml")
    results = []
    with tempfile.TemporaryDirectory(prefix="int8-families-") as tmp:
        for name in args.families.split(","):
            print(f"== {name}", file=sys.stderr)
            results.append(family(name, str(assets / "models" / FAMILIES[name]), data, tmp, args))
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        memory = [] if args.no_memory else memory_rows(data, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps({"families": results, "memory": memory}, indent=1, default=str))
    publish("\n".join(table(results, memory, args)), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
