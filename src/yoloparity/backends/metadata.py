"""A model's :class:`ModelSpec` from an exported file's metadata and tensor shapes.

Shared by every backend that reads exported files (ONNX Runtime, OpenVINO, LiteRT): our
``yoloparity.spec`` key first, else the Ultralytics keys (``names``, ``stride``, ``imgsz``),
else YOLOv5's (``names``, ``stride``). The head format is read from the output's shape and
checked against the input shape, so a file with an unexpected output is refused with its shape
named, not decoded into garbage.
"""

from __future__ import annotations

import ast
import json
import os

import numpy as np

from ..errors import ModelFileError
from ..heads import HEAD_FORMATS, HeadFormat, dets, head_format
from ..io.atomic import write_json
from ..models.hub import cache_dir
from ..types import SPEC_KEY, ModelSpec

_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def onnx_file_precision(model) -> str:
    """What an ONNX file computes in, read from its graph: "int8" (quantization nodes), "fp16" (float16
    weights, even behind float32 inputs and outputs) or "fp32" — so a report labels the file, not the request.
    ``model``: the file's path, or its graph already loaded (``onnx.ModelProto``).

    A path's answer is kept in the cache folder under the file's identity (real path, size, modification time in
    ns): reading the graph needs the ``onnx`` package, whose import alone costs ~0.85 s of CPU here (0.7 s of it
    ``ml_dtypes``' extension) — 60 % of a one-image ONNX Runtime predict, paid again by every process of a run."""
    if not isinstance(model, str):
        return _graph_precision(model)
    key = _file_identity(model)
    known = _precision_cache().get(key[0]) if key else None
    if known and known.get("size") == key[1] and known.get("mtime_ns") == key[2] and known.get("precision"):
        return known["precision"]
    import onnx

    precision = _graph_precision(onnx.load(model, load_external_data=False))
    if key:
        _remember_precision(key, precision)
    return precision


def _graph_precision(proto) -> str:
    import onnx

    graph = proto.graph
    if any(node.op_type in _INT8_OPS for node in graph.node):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer):
        return "fp16"
    return "fp32"


_PRECISION_CACHE = "onnx-file-precision.json"


def _file_identity(path: str) -> tuple[str, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # onnx.load names the missing file
    return os.path.realpath(path), int(stat.st_size), int(stat.st_mtime_ns)


def _precision_cache() -> dict:
    """The cached answers (an unreadable or damaged cache file is an empty cache)."""
    try:
        with open(os.path.join(cache_dir(), _PRECISION_CACHE), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember_precision(key: tuple[str, int, int], precision: str) -> None:
    """Add one answer, written atomically (processes of one run may write at once: the last write wins, and a lost
    entry is only read again next time); a cache folder that cannot be written is skipped."""
    entries = _precision_cache()
    entries.pop(key[0], None)  # re-added last, so the bound below drops the least recently written
    entries[key[0]] = {"size": key[1], "mtime_ns": key[2], "precision": precision}
    if len(entries) > 512:  # bounded: the least recently written go first
        entries = dict(list(entries.items())[-512:])
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        write_json(os.path.join(cache_dir(), _PRECISION_CACHE), entries)
    except OSError:
        pass


def static_dim(value) -> int | None:
    """A shape dimension as an int when it is fixed, None when it is symbolic or unknown."""
    return value if isinstance(value, int) and value > 0 else None


def anchor_count(h: int, w: int, strides: tuple[int, ...], per_cell: int) -> int:
    """Rows (or columns) of a head's raw output for an h x w input: grid cells over the strides x anchors per cell."""
    return sum((h // s) * (w // s) for s in strides) * per_cell


def _shape_error(path: str, out_shape: list, in_hw, nc: int | None) -> ModelFileError:
    layouts = " or ".join(f"{fmt.layout_text()} ({fmt.name})"
                          for fmt in HEAD_FORMATS.values() if fmt.inferred_from_shape and fmt.fixed_channels is None)
    return ModelFileError(
        path,
        f"unexpected output shape {out_shape} for input {in_hw[0] or '?'}x{in_hw[1] or '?'}"
        + (f" and {nc} classes" if nc is not None else "")
        + f": expected {layouts}",
    )


def _fits(fmt: HeadFormat, a: int | None, b: int | None, nc: int, hw, strides) -> bool:
    """Whether the known output dims agree with ``fmt``; unknown (symbolic) dims agree with anything.

    With an unknown input size a static anchor dim must still be a whole number of the largest
    stride's cells (21 anchors per 32x32 cell for strides 8/16/32, x3 for YOLOv5).
    """
    channels, anchors = fmt.channel_and_anchor_dims((None, a, b))
    if channels not in (None, fmt.channels(nc)):
        return False
    if fmt.anchors_per_cell is None:  # selected detections: both dims known, the count up to the format's limit
        # (a dynamic count with 6 channels is a 1-class YOLOv5 head; a dynamic channel dim is not 6 by itself)
        return channels is not None and anchors is not None and anchors <= dets.MAX_ROWS
    if anchors is None:
        return True
    if hw[0] and hw[1]:
        return anchors == anchor_count(hw[0], hw[1], strides, fmt.anchors_per_cell)
    unit = sum((max(strides) // s) ** 2 for s in strides) * fmt.anchors_per_cell
    return anchors % unit == 0


def _classes_from_shape(fmt: HeadFormat, a: int | None, b: int | None, hw, strides) -> int | None:
    """The class count ``fmt`` would read from an output shape (no class names to say it), or None."""
    if fmt.fixed_channels is not None:
        return None
    channels, anchors = fmt.channel_and_anchor_dims((None, a, b))
    if channels is None or channels <= fmt.channels_besides_classes:
        return None
    if hw[0] and hw[1] and anchors != anchor_count(hw[0], hw[1], strides, fmt.anchors_per_cell):
        return None
    return channels - fmt.channels_besides_classes


def infer_head(path: str, out_shape: list, in_hw: tuple[int | None, int | None], nc: int | None,
               strides=(8, 16, 32), head: str | None = None) -> tuple[str, int]:
    """(head format, number of classes) from the raw output's shape — the declared ``head`` checked, or the one
    format whose layout fits; raise naming the shape if none or several fit."""
    if len(out_shape) != 3:
        raise _shape_error(path, out_shape, in_hw, nc)
    a, b = static_dim(out_shape[1]), static_dim(out_shape[2])
    candidates = [head_format(head)] if head else [f for f in HEAD_FORMATS.values() if f.inferred_from_shape]
    selected = [f for f in candidates if f.fixed_channels is not None and _fits(f, a, b, nc or 0, in_hw, strides)]
    if selected:  # detections already selected in the graph (end-to-end exports): (N, K, 6)
        return selected[0].name, nc or 80
    candidates = [f for f in candidates if f.fixed_channels is None]
    if nc is None:  # no class names: the class count is whichever dim is not the anchor count
        counts = {f.name: _classes_from_shape(f, a, b, in_hw, strides) for f in candidates}
        known = {name: n for name, n in counts.items() if n}
        if len(known) == 2 and a is not None and b is not None and not (in_hw[0] and in_hw[1]):
            known = {name: n for name, n in known.items()  # rows outnumber channels: the anchor axis is the longer
                     if (head_format(name).layout == "rows") == (a > b)}
        if len(known) != 1:
            raise _shape_error(path, out_shape, in_hw, nc)
        nc = next(iter(known.values()))
    fitting = [f for f in candidates if _fits(f, a, b, nc, in_hw, strides)]
    if len(fitting) != 1 or nc < 1:
        raise _shape_error(path, out_shape, in_hw, nc)
    return fitting[0].name, nc


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
        if spec.head_format not in HEAD_FORMATS:
            raise ModelFileError(path, f"its spec names the head format {spec.head_format!r}, which this version does not know "
                                       f"({', '.join(HEAD_FORMATS)})")
        infer_head(path, out_shape, in_hw, spec.nc, spec.strides, head=spec.head_format)
        return spec.replace(source=path)
    names = _names_from_meta(meta)
    stride = int(meta.get("stride", 32)) if str(meta.get("stride", "32")).isdigit() else 32
    strides = tuple(s for s in (8, 16, 32, 64) if s <= stride)[-3:] if stride != 64 else (8, 16, 32, 64)
    head, nc = infer_head(path, out_shape, in_hw, len(names) if names else None, strides)
    imgsz = (in_hw[0] or 640, in_hw[1] or 640)
    imgsz_from = "the file's static input" if in_hw[0] and in_hw[1] else "the default (the file records no size)"
    if "imgsz" in meta:
        try:
            value = ast.literal_eval(meta["imgsz"])
            imgsz = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
            imgsz_from = "the file's metadata (imgsz)"
        except (ValueError, SyntaxError, TypeError, IndexError):
            pass
    family = "ultralytics" if ("imgsz" in meta or "task" in meta) else head_format(head).box_rule
    return ModelSpec(
        names=tuple(names) if names else tuple(f"class{i}" for i in range(nc)),
        head_format=head,
        stride=stride,
        strides=strides,
        imgsz=imgsz,
        imgsz_from=imgsz_from,
        num_anchors=head_format(head).anchors_per_cell or 1,
        source=path,
        family=family,
    )


def check_head_output(path: str, spec: ModelSpec, out: np.ndarray, batch_shape: tuple[int, ...], what: str = "output") -> None:
    """Refuse a raw output whose shape is not the head's for this input: never decode garbage."""
    n, _, h, w = batch_shape
    fmt = head_format(spec.head_format)
    if fmt.anchors_per_cell is None:  # selected detections: any number of rows
        channels, _ = fmt.channel_and_anchor_dims(out.shape) if out.ndim == 3 else (None, None)
        if out.ndim != 3 or out.shape[0] != n or channels != fmt.channels(spec.nc):
            raise ModelFileError(path, f"{what} has shape {out.shape}, expected {fmt.layout_text()} detections "
                                       f"with N = {n}")
        return
    want = fmt.output_shape(n, anchor_count(h, w, spec.strides, spec.num_anchors), spec.nc)
    if out.shape != want:
        raise ModelFileError(path, f"{what} has shape {out.shape}, expected {want} for a {h}x{w} input")


def head_notes(spec: ModelSpec) -> list[str]:
    """What the user should know about how a file's head is post-processed here."""
    if head_format(spec.head_format).selection != "given":
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
