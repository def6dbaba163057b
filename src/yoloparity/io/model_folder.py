"""A folder given as a model: the one model file inside it.

Exporters write folders users pass around as "the model": Ultralytics' ``yolo export format=openvino`` writes
``yolov8n_openvino_model/`` holding ``yolov8n.xml``, ``yolov8n.bin`` and ``metadata.yaml`` (names, imgsz, stride).
Such a folder is a model path like any other; the backend then reads the metadata beside the file.
"""

from __future__ import annotations

import os

from ..errors import ModelFileError

MODEL_SUFFIXES = (".xml", ".onnx", ".tflite", ".pt")


def model_in_folder(folder: str) -> str:
    """The single model file of ``folder`` (an OpenVINO IR's .xml needs its .bin beside it); otherwise an error that
    says it is a folder, what it holds, and what a model folder must hold."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise ModelFileError(folder, f"is a folder that cannot be listed ({exc.strerror})") from exc
    found = [n for n in names if n.lower().endswith(MODEL_SUFFIXES)]
    irs = [n for n in found if n.lower().endswith(".xml") and os.path.splitext(n)[0] + ".bin" in names]
    candidates = irs or [n for n in found if not n.lower().endswith(".xml")]
    if len(candidates) == 1:
        return os.path.join(folder, candidates[0])
    shown = ", ".join(found[:6]) + (" ..." if len(found) > 6 else "") if found else "no model file"
    raise ModelFileError(folder, f"is a folder, not a model file, and holds {shown}: a model folder holds exactly one "
                                 "model — an OpenVINO IR (.xml with its .bin, and metadata.yaml, as `yolo export "
                                 "format=openvino` writes it) or one .onnx / .tflite / .pt file; or pass the file itself")
