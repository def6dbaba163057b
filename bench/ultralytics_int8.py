"""Ultralytics' own int8 exports of the trained checkpoints, next to ours: their mAP, drop and speed.

For YOLOv8n, YOLO26n and YOLOv10n (`*-from-int8.pt`): Ultralytics 8.4.190 exports int8 its own way
(`export(format=openvino|tflite, int8=True, data=coco-val-mini)`, calibrating on all 206 images) and validates the
exported file with its own validator at batch 1 (bench/reference_ultralytics_int8.py, in the reference
environment); its float baseline is its own validator on the checkpoint (bench/reference_ultralytics.py, its default
head). Both sides' predictions are scored here with the same pycocotools call on all 206 images. Speed: the exported
file is timed in this environment at batch 1, 2 threads, interleaved with our float ONNX export on ONNX Runtime (the
baseline of bench/int8_families.py).

    .venv/bin/python bench/ultralytics_int8.py [--formats openvino,tflite] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- bench:ultralytics_int8:begin -->", "<!-- bench:ultralytics_int8:end -->"
CHECKPOINTS = ("yolov8n", "yolo26n", "yolov10n")


def _python() -> Path:
    python = Path(os.environ.get("YOLOPARITY_ULTRALYTICS_PYTHON", ROOT / "bench" / ".venv-ultralytics" / "bin" / "python"))
    if not python.exists():
        raise SystemExit("needs the reference environment: bash bench/setup_reference_ultralytics.sh, then "
                         "bench/.venv-ultralytics/bin/pip install nncf")
    return python


def _score(predictions: list[dict]) -> tuple[float, float]:
    from yoloparity.data.coco_classes import COCO80_TO_91
    from yoloparity.data.datasets import load_dataset
    from yoloparity.evaluate.coco import coco_evaluate

    ds = load_dataset(str(assets_dir(ROOT) / "coco-val-mini" / "data.yaml"))
    rows = [{**p, "category_id": COCO80_TO_91[p["class_index"]]} for p in predictions]
    m = coco_evaluate(ds.gt, rows, ds.names, ds.category_ids, "pycocotools")
    return m.mAP50_95, m.mAP50


def _reference(python: Path, script: str, *args: str) -> dict:
    out = args[args.index("--out") + 1]
    done = subprocess.run([str(python), str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(Path(out).read_text())


def _timer(path: str):
    """A batch-1 callable for an exported file: OpenVINO IR folder or TFLite file."""
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path, num_threads=2)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        import numpy as np

        x = np.zeros(detail["shape"], detail["dtype"])

        def run():
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
        return run
    import numpy as np
    import openvino as ov

    xml = next(Path(path).glob("*.xml"))
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_NUM_THREADS": 2})
    request = compiled.create_infer_request()
    x = np.zeros(list(compiled.inputs[0].shape), np.float32)
    return lambda: request.infer({0: x})


def _latency(float_onnx: str, exported: str, repeats: int = 30) -> tuple[float, float]:
    import statistics

    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    session = ort.InferenceSession(float_onnx, so, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 640, 640), np.float32)
    runs = {"float": lambda: session.run(None, {session.get_inputs()[0].name: x}), "int8": _timer(exported)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(repeats + 3):
        for key in (runs if i % 2 == 0 else reversed(list(runs))):
            start = time.perf_counter()
            runs[key]()
            if i >= 3:
                times[key].append((time.perf_counter() - start) * 1000)
    return statistics.median(times["float"]), statistics.median(times["int8"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", default="openvino,tflite")
    ap.add_argument("--checkpoints", default=",".join(CHECKPOINTS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from yoloparity.environment import cpu_summary
    from yoloparity.yolo_model import export_model

    python = _python()
    assets = assets_dir(ROOT)
    data = str(assets / "coco-val-mini" / "data.yaml")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ultralytics-int8-") as tmp:
        for name in args.checkpoints.split(","):
            pt = str(assets / "models" / f"{name}-from-int8.pt")
            base = _reference(python, "reference_ultralytics.py", pt, data, "--batch", "1", "--out",
                              os.path.join(tmp, f"{name}-float.json"))
            float_map = _score(base["predictions"])[0] if "predictions" in base else None
            float_onnx = export_model(pt, os.path.join(tmp, f"{name}.onnx"), imgsz=640, dynamic=False)
            for fmt in args.formats.split(","):
                ref = _reference(python, "reference_ultralytics_int8.py", pt, data, "--format", fmt, "--keep",
                                 os.path.join(tmp, f"{name}-{fmt}"), "--out", os.path.join(tmp, f"{name}-{fmt}.json"))
                row = {"checkpoint": name, "format": fmt, "float_map": float_map}
                if "error" in ref:
                    row["error"] = ref["error"]
                else:
                    row["int8_map"], row["int8_map50"] = _score(ref["predictions"])
                    row["ms_float_ort"], row["ms_int8"] = _latency(float_onnx, ref["file"])
                    row["version"] = ref["ultralytics"]
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    lines = [MARK_BEGIN, "## Ultralytics' own int8 exports of the same trained checkpoints", "",
             "- command: `.venv/bin/python bench/ultralytics_int8.py` (reference side: `bash "
             "bench/setup_reference_ultralytics.sh && bench/.venv-ultralytics/bin/pip install nncf`)",
             f"- when: {datetime.date.today().isoformat()}; CPU: {cpu_summary()}, 2 threads",
             "- their recipe: `YOLO(pt).export(format=..., int8=True, data=coco-val-mini)` (calibrated on all 206 "
             "images), validated by their validator at batch 1 with their default head (end-to-end checkpoints: "
             "one-to-many + NMS in 8.4.190); float: their validator on the checkpoint; both scored by pycocotools on "
             "all 206 images (their calibration images included, as their recipe does). Speed: the exported file at "
             "batch 1, 2 threads, interleaved with our float ONNX on ONNX Runtime", "",
             "| checkpoint | their int8 export | float mAP | int8 mAP | drop | ms int8 | ms float (ORT) | x ORT float |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['checkpoint']} | {r['format']} | {r['float_map'] or 0:.4f} | failed: {r['error'][:120]} "
                         "| | | | |")
            continue
        lines.append(f"| {r['checkpoint']} | {r['format']} int8 | {r['float_map']:.4f} | {r['int8_map']:.4f} | "
                     f"{r['float_map'] - r['int8_map']:+.4f} | {r['ms_int8']:.1f} | {r['ms_float_ort']:.1f} | "
                     f"{r['ms_float_ort'] / r['ms_int8']:.2f}x |")
    lines.append(MARK_END)
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
