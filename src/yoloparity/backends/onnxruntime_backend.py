"""ONNX Runtime backend: our exports and those of the YOLOv5 and Ultralytics exporters.

The spec comes from the file's metadata: our ``yoloparity.spec`` key first, else the
Ultralytics keys (``names``, ``stride``, ``imgsz``), else YOLOv5's (``names``, ``stride``).
The head format is read from the output's shape and checked against the input shape, so a
file with an unexpected output is refused with its shape named, not decoded into garbage.
"""

from __future__ import annotations

import ast
import os

import numpy as np

from ..errors import BackendUnavailableError, InputNotFoundError, ModelFileError
from ..models.export import SPEC_KEY
from ..types import ModelSpec
from .base import ShapeConstraints, check_batch

_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _anchor_count(h: int, w: int, strides: tuple[int, ...], per_cell: int) -> int:
    return sum((h // s) * (w // s) for s in strides) * per_cell


def _shape_error(path: str, out_shape: list, in_hw, nc: int | None) -> ModelFileError:
    return ModelFileError(
        path,
        f"unexpected output shape {out_shape} for input {in_hw[0] or '?'}x{in_hw[1] or '?'}"
        + (f" and {nc} classes" if nc is not None else "")
        + ": expected (N, A, 5+nc) (YOLOv5) or (N, 4+nc, A) (YOLOv8/11)",
    )


def _fits(head: str, a: int | None, b: int | None, nc: int, expected: dict[str, int]) -> bool:
    """Whether the known output dims agree with ``head``; unknown (symbolic) dims agree with anything."""
    classes_dim, anchors_dim, want_classes = (b, a, nc + 5) if head == "v5" else (a, b, nc + 4)
    return classes_dim in (None, want_classes) and (not expected or anchors_dim in (None, expected[head]))


def infer_head(path: str, out_shape: list, in_hw: tuple[int | None, int | None], nc: int | None,
               strides=(8, 16, 32), head: str | None = None) -> tuple[str, int]:
    """(head format, number of classes) from the raw output's shape; raise naming the shape if none fits."""
    if len(out_shape) != 3:
        raise _shape_error(path, out_shape, in_hw, nc)
    a, b = _dim(out_shape[1]), _dim(out_shape[2])
    h, w = in_hw
    expected = {"v5": _anchor_count(h, w, strides, 3), "v8": _anchor_count(h, w, strides, 1)} if h and w else {}
    if nc is None:  # no class names: the class count is whichever dim is not the anchor count
        if expected and a == expected["v5"] and b is not None and b > 5:
            nc = b - 5
        elif expected and b == expected["v8"] and a is not None and a > 4:
            nc = a - 4
        elif not expected and a is not None and b is not None:
            nc = b - 5 if a > b else a - 4
        else:
            raise _shape_error(path, out_shape, in_hw, nc)
    candidates = [head] if head else ["v5", "v8"]
    fitting = [c for c in candidates if _fits(c, a, b, nc, expected)]
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


def spec_from_onnx(path: str, meta: dict[str, str], in_shape: list, out_shape: list) -> ModelSpec:
    in_hw = (_dim(in_shape[2]), _dim(in_shape[3])) if len(in_shape) == 4 else (None, None)
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


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str, device: str = "cpu", threads: int | None = None, deterministic: bool = False):
        import onnxruntime as ort

        if not os.path.exists(path):
            raise InputNotFoundError(path, "no such file")
        kind = device.split(":")[0]
        provider = _PROVIDERS.get(kind)
        if provider is None:
            raise BackendUnavailableError(path, f"device '{device}' is not supported by onnxruntime (cpu, cuda:N, tensorrt:N)")
        if provider not in ort.get_available_providers():
            raise BackendUnavailableError(path, f"device '{device}' needs {provider}, which this onnxruntime build does not have")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if deterministic:
            opts.use_deterministic_compute = True
        providers: list = [provider]
        if provider != "CPUExecutionProvider":
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [(provider, {"device_id": index}), "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFileError(path, f"onnxruntime cannot load this file ({str(exc).splitlines()[0][:200]})") from exc
        self.path = path
        self.device = device
        self.precision = "fp32"
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(path, f"expected one image input, found {len(inputs)}: {[i.name for i in inputs]}")
        self.input = inputs[0]
        if self.input.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelFileError(path, f"input '{self.input.name}' is {self.input.type}; only float32/float16 inputs are supported here")
        self.input_dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32
        if self.input_dtype == np.float16:
            self.precision = "fp16"
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        self.output = outputs[names.index("output0")] if "output0" in names else outputs[0]
        in_shape = list(self.input.shape)
        if len(in_shape) != 4 or (_dim(in_shape[1]) not in (None, 3)):
            raise ModelFileError(path, f"unexpected input shape {in_shape}: expected (N, 3, H, W)")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = spec_from_onnx(path, meta, in_shape, list(self.output.shape))
        self.constraints = ShapeConstraints(batch=_dim(in_shape[0]), height=_dim(in_shape[2]), width=_dim(in_shape[3]))

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.path)
        self.constraints.check(batch.shape, self.path)
        out = self.session.run([self.output.name], {self.input.name: batch.astype(self.input_dtype, copy=False)})[0]
        out = np.asarray(out, dtype=np.float32)
        n, _, h, w = batch.shape
        per_cell = 3 if self.spec.head == "v5" else 1
        anchors = _anchor_count(h, w, self.spec.strides, per_cell)
        want = (n, anchors, self.spec.nc + 5) if self.spec.head == "v5" else (n, self.spec.nc + 4, anchors)
        if out.shape != want:
            raise ModelFileError(self.path, f"output '{self.output.name}' has shape {out.shape}, expected {want} for a {h}x{w} input")
        return out


def create(path: str, device: str = "cpu", **options) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, device=device, **options)
