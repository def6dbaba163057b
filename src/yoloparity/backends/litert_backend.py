"""LiteRT (TFLite) backend through ``ai-edge-litert``: float, dynamic-range and full-integer models.

What differs from the ONNX backends, and is undone here so the shared pipeline sees the same raw
head tensor as from any other backend:

* layout: TFLite exports take NHWC input; the NCHW batch is transposed.
* integer I/O: an int8/uint8 input is quantized with the model's own scale and zero point
  (``q = round(x / scale) + zero_point``, clipped to the type's range), and an integer output is
  dequantized (``(q - zero_point) * scale``). A float model ignores both.
  ``int8_input="truncate"`` reproduces Ultralytics' LiteRT backend instead (``(x / scale + zero_point)
  .astype(int8)``: toward zero, not to the nearest step, so about half the pixel values enter one step
  off; with a scale of 1/255, ``p / 255 / scale`` lands just below ``p`` and every pixel above the zero
  point enters one step darker). Rounding is the inverse of the model's own dequantization and the
  default; on ``yolov8n_full_integer_quant.tflite`` the truncation happens to score 0.011 mAP50 higher
  (and on the YOLOv5 uint8 export 0.002 lower), which is the whole gap between the two validators.
* normalized boxes: the YOLOv5 and Ultralytics TFLite exporters divide box xywh by the input
  size (to keep one quantization scale usable for boxes and scores); they are multiplied back.
  Files of ours say which in the ``yoloparity.boxes`` key; files without it follow the
  exporters' convention (normalized).
* batch: exported files have a static batch of 1; larger batches run image by image, which
  keeps results batch-invariant by construction.
* raw maps: a full-integer file of ours may end at the head's last convolutions (one output per map, each with
  its own scale, :mod:`yoloparity.heads.raw_maps`); its metadata's layout says so, and the maps are dequantized
  and decoded here, in float32, into the raw head tensor.

Metadata, in order: the zip member Ultralytics appends inside the ``.tflite`` (a Python-literal
dict), a ``metadata.yaml`` beside the file, a ``<prefix>_metadata.yaml`` beside it whose prefix
starts the file's name (``yolov8n_metadata.yaml`` for ``yolov8n_int8.tflite``); else names and
head come from the output shape alone.
"""

from __future__ import annotations

import ast
import zipfile

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from ..heads import head_format
from ..heads.raw_maps import RAW_MAPS_KEY, MapLayout, QuantizedMap, decode_maps
from .base import BackendBase, ShapeConstraints, check_model_file
from .metadata import check_head_output, sidecar_metadata, spec_from_metadata

BOXES_KEY = "yoloparity.boxes"


def _embedded_metadata(path: str) -> dict | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not names:
                return None
            value = ast.literal_eval(archive.read(names[0]).decode("utf-8"))
            return value if isinstance(value, dict) else None
    except (zipfile.BadZipFile, ValueError, SyntaxError, UnicodeDecodeError, OSError):
        return None


def read_tflite_metadata(path: str) -> tuple[dict[str, str], str | None]:
    """The file's metadata as ONNX-style string values, and where it was found."""
    meta, where = _embedded_metadata(path), "embedded"
    if meta is None:
        meta, where = sidecar_metadata(path)
    if meta is None:
        return {}, None
    return {str(k): (v if isinstance(v, str) else repr(v)) for k, v in meta.items()}, where


def _quantization(detail: dict) -> tuple[float, int]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


INT8_INPUT_RULES = ("round", "truncate")
MAP_ORDER_KEY = "yoloparity.raw_maps_order"  # the output tensor names in the layout's map order


def _layout(path: str, meta: dict[str, str]) -> MapLayout | None:
    """The raw-maps layout a file records, None for a file with one head output; unreadable: an error naming it."""
    if RAW_MAPS_KEY not in meta:
        return None
    try:
        return MapLayout.from_json(meta[RAW_MAPS_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(path, f"its raw-maps metadata ({RAW_MAPS_KEY}) cannot be read: {exc}") from None


def _order_maps(path: str, outputs: list[dict], layout: MapLayout, order: str | None) -> list[dict]:
    """The file's outputs in the layout's map order: by the names recorded at conversion, else by shape (each
    map's channels and grid size must then be unique)."""
    if order:
        by_name = {o["name"]: o for o in outputs}
        names = ast.literal_eval(order) if isinstance(order, str) else order
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ModelFileError(path, f"its raw-maps metadata names outputs {missing} the file does not have")
        return [by_name[n] for n in names]
    wanted = [(c, hw) for c, hw in zip(layout.channels, layout.map_sizes)]
    shapes = {o["name"]: (int(o["shape"][3]), (int(o["shape"][1]), int(o["shape"][2]))) for o in outputs
              if len(o["shape"]) == 4}
    ordered = []
    for key in wanted:
        found = [o for o in outputs if shapes.get(o["name"]) == key]
        if len(found) != 1:
            raise ModelFileError(path, f"cannot tell which output is the map of {key[0]} channels at {key[1]}: "
                                       f"{len(found)} outputs have that shape and the file records no order")
        ordered.append(found[0])
    return ordered


class LiteRTBackend(BackendBase):
    """A ``.tflite`` file on LiteRT's interpreter (XNNPACK on the CPU): NHWC input, int8 input and output
    quantized and dequantized here, normalized boxes scaled to input pixels, one image per invoke."""
    name = "litert"

    def __init__(self, path: str, device: str = "cpu", threads: int | None = None, deterministic: bool = False,
                 int8_input: str = "round"):
        if int8_input not in INT8_INPUT_RULES:
            raise BackendUnavailableError(path, f"int8_input must be one of {', '.join(INT8_INPUT_RULES)}, got {int8_input!r}")
        self.int8_input = int8_input
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailableError(path, "backend 'litert' needs the package ai-edge-litert (pip install \"yoloparity[litert]\")") from exc
        check_model_file(path, device, "litert")
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=int(threads) if threads else None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(path, f"LiteRT cannot load this file ({str(exc).splitlines()[0][:200]})") from exc
        self.path = path
        self.device = "cpu"
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1:
            raise ModelFileError(path, f"expected one image input, found {len(inputs)}")
        self.input = inputs[0]
        shape = [int(v) for v in self.input["shape"]]
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise ModelFileError(path, f"unexpected input shape {shape}: expected (1, H, W, 3) or (1, 3, H, W)")
        self.nhwc = shape[3] == 3
        in_hw = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])
        meta, self.metadata_source = read_tflite_metadata(path)
        self.layout = _layout(path, meta)
        if self.layout is not None:
            self.outputs = _order_maps(path, outputs, self.layout, meta.get(MAP_ORDER_KEY))
            head_shape = list(self.layout.head_shape())
        else:
            # YOLOv5's TFLite export has four outputs when NMS is not included; the head is the 3-D one
            heads = [o for o in outputs if len(o["shape"]) == 3]
            if not heads:
                raise ModelFileError(path, f"no 3-D head output among {[list(o['shape']) for o in outputs]}")
            self.outputs = heads[:1]
            head_shape = [int(v) for v in heads[0]["shape"]]
        self.output = self.outputs[0]
        self.spec = spec_from_metadata(path, meta, in_hw, head_shape)
        self.normalized_boxes = self.layout is None and meta.get(BOXES_KEY, "normalized") == "normalized"
        self.in_dtype = np.dtype(self.input["dtype"])
        self.out_dtype = np.dtype(self.output["dtype"])
        self.in_quant = _quantization(self.input)
        self.out_quant = _quantization(self.output)
        self.out_quants = [_quantization(o) for o in self.outputs]  # a raw-maps file: each map its own
        if self.in_dtype.kind in "iu" and self.in_quant[0] == 0:
            raise ModelFileError(path, f"input is {self.in_dtype} without a quantization scale; cannot feed images to it")
        self.precision = "int8" if (self.in_dtype.kind in "iu" or self._has_int8_weights()) else "fp32"
        self.constraints = ShapeConstraints(batch=None, height=in_hw[0], width=in_hw[1])

    def _has_int8_weights(self) -> bool:
        return any(np.dtype(t["dtype"]) in (np.int8, np.uint8) for t in self.interpreter.get_tensor_details())

    @property
    def io_description(self) -> str:
        """e.g. 'int8 in (scale 0.0187, zero point -14), int8 out' — for reports; a raw-maps file: how many maps."""
        def side(dtype, quant):
            return f"{dtype.name}" + (f" (scale {quant[0]:.6g}, zero point {quant[1]})" if dtype.kind in "iu" else "")
        if self.layout is not None:
            return (f"{side(self.in_dtype, self.in_quant)} in, {len(self.outputs)} {self.out_dtype.name} raw maps out "
                    "(each its own scale), decoded on the host in float32")
        return f"{side(self.in_dtype, self.in_quant)} in, {side(self.out_dtype, self.out_quant)} out"

    @staticmethod
    def quantize(image: np.ndarray, dtype, quant: tuple[float, int], rule: str = "round") -> np.ndarray:
        """An input for a tensor of ``dtype``: an integer one through its (scale, zero point) by ``rule``
        (:data:`INT8_INPUT_RULES`), a float one as it is."""
        dtype = np.dtype(dtype)
        if dtype.kind not in "iu":
            return image.astype(dtype, copy=False)
        scale, zero_point = quant
        info = np.iinfo(dtype)
        q = image / np.float32(scale)  # one float array, the rest in place (a 640x640 input: 1.2 M values per image)
        if rule != "truncate":  # Ultralytics' rule: no rounding, astype truncates toward zero
            np.round(q, out=q)
        q += zero_point
        return np.clip(q, info.min, info.max, out=q).astype(dtype)

    def _quantize_input(self, image: np.ndarray) -> np.ndarray:
        return self.quantize(image, self.in_dtype, self.in_quant, self.int8_input)

    @staticmethod
    def dequantize(out: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
        """An output as float32: an integer tensor through its (scale, zero point), a float one as it is."""
        if out.dtype.kind not in "iu":
            return out.astype(np.float32, copy=False)
        scale, zero_point = quant
        return ((out.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)

    def _invoke(self, image: np.ndarray) -> np.ndarray:
        """One image (3, H, W) → its raw head output (without the batch axis)."""
        x = image.transpose(1, 2, 0)[None] if self.nhwc else image[None]
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(self._quantize_input(x)))
        self.interpreter.invoke()
        if self.layout is None:
            return self.dequantize(self.interpreter.get_tensor(self.output["index"]), self.out_quant)[0]
        maps = []
        for o, q in zip(self.outputs, self.out_quants):
            out = self.interpreter.get_tensor(o["index"])
            # an int8 map is decoded through tables of its 256 values; a float one is transposed NHWC → NCHW
            maps.append(QuantizedMap(out, *q) if out.dtype == np.int8 else self.dequantize(out, q).transpose(0, 3, 1, 2))
        return decode_maps(maps, self.layout)[0]

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[2:]
        out = np.stack([self._invoke(image) for image in batch])
        check_head_output(self.path, self.spec, out, batch.shape)
        if self.normalized_boxes:
            head_format(self.spec.head_format).scale_boxes(out, np.array([w, h, w, h], np.float32))
        return out

    def _release(self) -> None:
        self.interpreter = None


def create(path: str, device: str = "cpu", **options) -> LiteRTBackend:
    """The registry's factory for ``litert``."""
    return LiteRTBackend(path, device=device, **options)
