"""A model's :class:`ModelSpec` from an exported file's metadata and tensor shapes.

Shared by every backend that reads exported files (ONNX Runtime, OpenVINO, LiteRT): our
``yoloparity.spec`` key first, else the Ultralytics keys (``names``, ``stride``, ``imgsz``),
else YOLOv5's (``names``, ``stride``). The head format is read from the output's shape and
checked against the input shape, so a file with an unexpected output is refused with its shape
named, not decoded into garbage.
"""

from __future__ import annotations

import ast
import os

import numpy as np

from ..errors import ModelFileError
from ..types import SPEC_KEY, ModelSpec

_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def onnx_file_precision(model) -> str:
    """What an ONNX file computes in, read from its graph: "int8" (quantization nodes), "fp16" (float16
    weights, even behind float32 inputs and outputs) or "fp32" — so a report labels the file, not the request.
    ``model``: the file's path, or its graph already loaded (``onnx.ModelProto``)."""
    import onnx

    graph = (onnx.load(model, load_external_data=False) if isinstance(model, str) else model).graph
    if any(node.op_type in _INT8_OPS for node in graph.node):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer):
        return "fp16"
    return "fp32"


MAX_TOPK_ROWS = 1000  # an (N, K, 6) output with K up to this is a list of detections, not a head (v5 has 25200 rows)


def static_dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def anchor_count(h: int, w: int, strides: tuple[int, ...], per_cell: int) -> int:
    return sum((h // s) * (w // s) for s in strides) * per_cell


def _shape_error(path: str, out_shape: list, in_hw, nc: int | None) -> ModelFileError:
    return ModelFileError(
        path,
        f"unexpected output shape {out_shape} for input {in_hw[0] or '?'}x{in_hw[1] or '?'}"
        + (f" and {nc} classes" if nc is not None else "")
        + ": expected (N, A, 5+nc) (YOLOv5) or (N, 4+nc, A) (YOLOv8/11)",
    )


def _fits(head: str, a: int | None, b: int | None, nc: int, expected: dict[str, int], strides) -> bool:
    """Whether the known output dims agree with ``head``; unknown (symbolic) dims agree with anything.

    With an unknown input size a static anchor dim must still be a whole number of the largest
    stride's cells (21 anchors per 32x32 cell for strides 8/16/32, x3 for YOLOv5).
    """
    classes_dim, anchors_dim, want_classes = (b, a, nc + 5) if head == "v5" else (a, b, nc + 4)
    if classes_dim not in (None, want_classes):
        return False
    if anchors_dim is None:
        return True
    if expected:
        return anchors_dim == expected[head]
    unit = sum((max(strides) // s) ** 2 for s in strides) * (3 if head == "v5" else 1)
    return anchors_dim % unit == 0


def infer_head(path: str, out_shape: list, in_hw: tuple[int | None, int | None], nc: int | None,
               strides=(8, 16, 32), head: str | None = None) -> tuple[str, int]:
    """(head format, number of classes) from the raw output's shape; raise naming the shape if none fits."""
    if len(out_shape) != 3:
        raise _shape_error(path, out_shape, in_hw, nc)
    a, b = static_dim(out_shape[1]), static_dim(out_shape[2])
    if head in (None, "dets") and b == 6 and a is not None and a <= MAX_TOPK_ROWS:
        return "dets", nc or 80  # detections already selected in the graph (end-to-end exports): (N, K, 6)
    h, w = in_hw
    expected = {"v5": anchor_count(h, w, strides, 3), "v8": anchor_count(h, w, strides, 1)} if h and w else {}
    if nc is None:  # no class names: the class count is whichever dim is not the anchor count
        if expected and a == expected["v5"] and b is not None and b > 5:
            nc = b - 5
        elif expected and b == expected["v8"] and a is not None and a > 4:
            nc = a - 4
        elif not expected and a is not None and b is not None:
            nc = b - 5 if a > b else a - 4
        elif not expected and (a is None) != (b is None):  # a dynamic input: the static dim is the class dim
            nc = b - 5 if a is None else a - 4
        else:
            raise _shape_error(path, out_shape, in_hw, nc)
    candidates = [("v5" if head == "v5" else "v8")] if head else ["v5", "v8"]  # e2e: the v8 layout
    fitting = [c for c in candidates if _fits(c, a, b, nc, expected, strides)]
    if len(fitting) != 1 or nc < 1:
        raise _shape_error(path, out_shape, in_hw, nc)
    return fitting[0], nc


def _names_from_meta(meta: dict[str, str]) -> list[str] | None:
    raw = meta.get("names")
    if not raw:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def spec_from_metadata(path: str, meta: dict[str, str], in_hw: tuple[int | None, int | None], out_shape: list) -> ModelSpec:
    """``meta`` maps keys to strings (Python literals for names/imgsz), as ONNX metadata does."""
    if SPEC_KEY in meta:
        spec = ModelSpec.from_json(meta[SPEC_KEY])
        infer_head(path, out_shape, in_hw, spec.nc, spec.strides, head=spec.head)
        return spec.replace(source=path)
    names = _names_from_meta(meta)
    stride = int(meta.get("stride", 32)) if str(meta.get("stride", "32")).isdigit() else 32
    strides = tuple(s for s in (8, 16, 32, 64) if s <= stride)[-3:] if stride != 64 else (8, 16, 32, 64)
    head, nc = infer_head(path, out_shape, in_hw, len(names) if names else None, strides)
    imgsz = (in_hw[0] or 640, in_hw[1] or 640)
    if "imgsz" in meta:
        try:
            value = ast.literal_eval(meta["imgsz"])
            imgsz = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
        except (ValueError, SyntaxError, TypeError, IndexError):
            pass
    family = "ultralytics" if ("imgsz" in meta or "task" in meta) else ("yolov5" if head == "v5" else "ultralytics")
    return ModelSpec(
        names=tuple(names) if names else tuple(f"class{i}" for i in range(nc)),
        head=head,
        stride=stride,
        strides=strides,
        imgsz=imgsz,
        num_anchors=3 if head == "v5" else 1,
        source=path,
        family=family,
    )


def check_head_output(path: str, spec: ModelSpec, out: np.ndarray, batch_shape: tuple[int, ...], what: str = "output") -> None:
    """Refuse a raw output whose shape is not the head's for this input: never decode garbage."""
    n, _, h, w = batch_shape
    if spec.head == "dets":
        if out.ndim != 3 or out.shape[0] != n or out.shape[2] != 6:
            raise ModelFileError(path, f"{what} has shape {out.shape}, expected ({n}, K, 6) detections")
        return
    anchors = anchor_count(h, w, spec.strides, spec.num_anchors)
    want = (n, anchors, spec.nc + 5) if spec.head == "v5" else (n, spec.nc + 4, anchors)
    if out.shape != want:
        raise ModelFileError(path, f"{what} has shape {out.shape}, expected {want} for a {h}x{w} input")


def head_notes(spec: ModelSpec) -> list[str]:
    """What the user should know about how a file's head is post-processed here."""
    if spec.head != "dets":
        return []
    return ["this file ends in its exporter's own top-k (output (N, K, 6)): its detections are read as they are, and "
            "near-equal scores rank as that graph's TopK kernel orders them, which differs between runtimes and "
            "devices; `yoloparity export` of the .pt keeps the head's raw output so every backend uses the same "
            "deterministic top-k"]


def sidecar_metadata(path: str) -> tuple[dict | None, str | None]:
    """The one rule for metadata beside a model file (OpenVINO IR, TFLite): ``metadata.yaml`` in its folder, else a
    ``<prefix>_metadata.yaml`` whose prefix starts the file's name (``yolov8n_metadata.yaml`` for
    ``yolov8n_int8.tflite``); the dict and the file it came from, or (None, None)."""
    import yaml

    folder, base = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(base)[0]
    candidates = [os.path.join(folder, "metadata.yaml")]
    try:
        candidates += sorted(
            os.path.join(folder, f) for f in os.listdir(folder)
            if f.endswith("_metadata.yaml") and stem.startswith(f[: -len("_metadata.yaml")])
        )
    except OSError:
        pass
    for candidate in candidates:
        if os.path.isfile(candidate):
            try:
                with open(candidate, encoding="utf-8") as fh:
                    value = yaml.safe_load(fh)
            except (OSError, yaml.YAMLError) as exc:
                raise ModelFileError(candidate, f"cannot read the model's metadata ({exc})") from exc
            if isinstance(value, dict):
                return value, candidate
    return None, None
