"""Ultralytics' own exports and predict, for bench/ultralytics_predict.py only.

Runs inside the reference environment (bench/.venv-ultralytics, made by bench/setup_reference_ultralytics.sh), never
inside the project's: the project's code and tests never import ``ultralytics``.

    python reference_ultralytics_predict.py export MODEL.pt OUT_DIR        # their format=onnx and format=openvino
    python reference_ultralytics_predict.py predict MODEL SOURCE_DIR        # their predict, one JSON line out

``predict`` runs ``YOLO(MODEL).predict(SOURCE_DIR, stream=True)`` with its defaults (conf 0.25, IoU 0.7, imgsz 640,
the file's own size for a static export), counts the boxes and prints them with the mean per-image stage times
Ultralytics reports and the inference precision OpenVINO's CPU plugin picks on this machine when not told (what
their OpenVINO backend compiles with: no precision hint).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def export(model: str, out_dir: str) -> None:
    """Their ONNX and OpenVINO exports of ``model`` (static 640, their defaults) copied into ``out_dir``."""
    from ultralytics import YOLO

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in ("onnx", "openvino"):
        made = Path(YOLO(model).export(format=fmt, imgsz=640, verbose=False))
        target = out / made.name
        if target.resolve() == made.resolve():
            pass
        elif made.is_dir():
            shutil.copytree(made, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(made, target)
        print(json.dumps({"format": fmt, "path": str(target)}))


def predict(model: str, source: str) -> None:
    """Their predict over ``source``: boxes, images and mean stage times, one JSON line."""
    from ultralytics import YOLO

    detections = images = 0
    stages = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    for result in YOLO(model).predict(source, stream=True, verbose=False):
        images += 1
        detections += len(result.boxes)
        for key in stages:
            stages[key] += result.speed.get(key) or 0.0
    try:
        import openvino as ov

        default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    except ImportError:
        default = None
    import ultralytics

    print(json.dumps({"images": images, "detections": detections, "openvino_default": default,
                      "ms_per_image": {k: v / max(images, 1) for k, v in stages.items()},
                      "ultralytics": ultralytics.__version__}))


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"export": export, "predict": predict}[command](*rest)
