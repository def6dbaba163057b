"""Where a full-integer TFLite file's error comes from: each int8 tensor against the float32 file of the same conversion.

``quantize --format tflite-int8`` keeps both files, and onnx2tf names their tensors alike, so every int8 tensor can
be dequantized and compared with its float twin on the same images (LiteRT's built-in kernels, every intermediate
tensor kept). The error is a signal-to-quantization-noise ratio, SQNR = 10 log10(Σf² / Σ(q − f)²), summed over the
images. Reported: each raw head map's SQNR, the score maps' rms score error where the float score is above 0.05 (the
error that moves detections), and the layers that lose the most SQNR themselves — their output's against the worst
of their inputs, a SiLU's convolution, sigmoid and multiply counted as one layer — which is where ranges or kernels
add error, not where it arrives. Why: a full-integer file has no float fallback (ONNX QDQ's accuracy control returns
sensitive nodes to float); its mAP drop says how much, this says where (BENCHMARKS.md, "Where the full-integer
error comes from").
"""

from __future__ import annotations

import ast

import numpy as np

from ..backends.litert_backend import MAP_ORDER_KEY, LiteRTBackend, read_tflite_metadata
from ..heads.raw_maps import ANCHORS, RAW_MAPS_KEY, MapLayout
from .tflite_ranges import FIXED_OUTPUT_OPS, interpreter_keeping_tensors

EXACT_DB = 60.0  # above this a tensor is the image as it came in (padded, sliced): int8 rounding alone stays below ~50
SCORE_FLOOR = 0.05  # score errors are counted where the float score is above this (the detections' range)


def _produced(interpreter) -> set[int]:
    """The tensors the file's ops write (not weights, nor a kernel's scratch buffer, whose contents are whatever was
    left there)."""
    return {int(i) for op in interpreter._get_ops_details() for i in op["outputs"]}


def _run(interpreter, x: np.ndarray) -> None:
    """One invoke on ``x`` (NHWC float32 0..1); an integer input (int8, or uint8 with --tflite-input uint8) quantized
    as the litert backend does."""
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], LiteRTBackend.quantize(x, detail["dtype"], detail["quantization"]))
    interpreter.invoke()


def _value(interpreter, detail: dict) -> np.ndarray | None:
    """A float or int8 tensor after the last invoke, as float32 (int8 dequantized); None for another type, a
    scalar, or a tensor the runtime does not keep. Read one at a time: every tensor of a 640 network at once, as
    float, is gigabytes (measured: 2.8 GB for YOLOv10n's two files)."""
    try:
        v = interpreter.get_tensor(detail["index"])
    except ValueError:  # a tensor the runtime does not keep
        return None
    if v is None or v.size < 2:
        return None
    if v.dtype == np.int8 and detail["quantization"][0] > 0:
        return LiteRTBackend.dequantize(v, detail["quantization"])
    return v if v.dtype == np.float32 else None


def _twin(output: str, float_outputs: set[str]) -> str:
    """The float file's name for an int8 output: the converter names the k-th output ``...:k`` in one file and
    ``Identity_k`` (``Identity`` for 0) in the other."""
    if output in float_outputs:
        return output
    k = output.rsplit(":", 1)[-1]
    return "Identity" if k == "0" else f"Identity_{k}"


def _score_maps(path: str) -> set[str]:
    """The outputs read through a sigmoid, from the file's raw-maps metadata (each level's class logits; all of a
    YOLOv5 map, whose every channel goes through one); empty for a file without it."""
    meta, _ = read_tflite_metadata(path)
    if RAW_MAPS_KEY not in meta or MAP_ORDER_KEY not in meta:
        return set()
    try:
        layout, order = MapLayout.from_json(meta[RAW_MAPS_KEY]), ast.literal_eval(meta[MAP_ORDER_KEY])
    except (ValueError, KeyError, TypeError, SyntaxError):
        return set()
    return {name for i, name in enumerate(order) if layout.kind == ANCHORS or i % 2 == 1}


def tensor_sqnr(int8_path: str, float_path: str, inputs: list[np.ndarray]) -> tuple[dict[str, float], dict[str, list]]:
    """SQNR (dB) of every tensor the two files share, over ``inputs`` (each (1, 3, H, W) float32 0..1); and per score
    map, [summed squared score error, cells counted] where the float score is above :data:`SCORE_FLOOR`."""
    q, f = interpreter_keeping_tensors(int8_path), interpreter_keeping_tensors(float_path)
    return _compare(q, f, _score_maps(int8_path), inputs)


def _compare(q, f, scores: set[str], inputs: list[np.ndarray]) -> tuple[dict[str, float], dict[str, list]]:
    """:func:`tensor_sqnr` on the two files' interpreters (``q`` int8, ``f`` float32)."""
    float_outputs = {d["name"] for d in f.get_output_details()}
    outputs = {d["name"] for d in q.get_output_details()}
    q_made, f_made = _produced(q), _produced(f)
    q_details = [d for d in q.get_tensor_details() if d["index"] in q_made]
    f_details = {d["name"]: d for d in f.get_tensor_details() if d["index"] in f_made}
    sums: dict[str, list[float]] = {}
    score_err: dict[str, list] = {}
    floor = np.log(SCORE_FLOOR / (1 - SCORE_FLOOR))
    for x in inputs:
        nhwc = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))
        _run(q, nhwc)
        _run(f, nhwc)
        for detail in q_details:
            name = detail["name"]
            twin = f_details.get(_twin(name, float_outputs) if name in outputs else name)
            v = None if twin is None else _value(q, detail)
            ref = None if v is None else _value(f, twin)
            if ref is None or ref.shape != v.shape:
                continue
            s = sums.setdefault(name, [0.0, 0.0])
            s[0] += float(np.square(v - ref).sum(dtype=np.float64))
            s[1] += float(np.square(ref).sum(dtype=np.float64))
            if name in scores:
                keep = ref > floor
                e = score_err.setdefault(name, [0.0, 0])
                v64, ref64 = v[keep].astype(np.float64), ref[keep].astype(np.float64)
                e[0] += float(((1 / (1 + np.exp(-v64)) - 1 / (1 + np.exp(-ref64))) ** 2).sum())
                e[1] += int(keep.sum())
    sqnr = {n: float(10 * np.log10(s / e)) if e > 0 else float("inf") for n, (e, s) in sums.items() if s > 0}
    return sqnr, score_err


def layer_losses(interpreter, sqnr: dict[str, float]) -> list[dict]:
    """Each op whose output was compared, in graph order: its SQNR and what it lost against its inputs' worst. An input
    not compared (a convolution's output is named differently in the two files) counts as the worst compared tensor
    upstream of it, so a convolution, sigmoid and multiply (one SiLU layer) is charged together to the multiply; a
    sigmoid's output (fixed range, inside that layer) is passed through the same way, not charged. ``interpreter``:
    the int8 file's."""
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    # tensor -> its SQNR, or the worst compared SQNR upstream of it; the image in, and what is only padded or sliced
    # from it, is exact (an int8 input holds every uint8 pixel value), so the first layer has no finite loss to list
    reach: dict[int, float] = {int(d["index"]): float("inf") for d in interpreter.get_input_details()}
    rows = []
    for position, op in enumerate(interpreter._get_ops_details()):
        upstream = [reach[i] for i in op["inputs"] if i in reach]
        inside = op["op_name"] == "LOGISTIC"
        for i in op["outputs"]:
            if names.get(i) in sqnr and not inside:
                reach[i] = sqnr[names[i]] if sqnr[names[i]] < EXACT_DB else float("inf")
            elif upstream:
                reach[i] = min(upstream)
        out = None if inside else next((names[i] for i in op["outputs"] if names.get(i) in sqnr), None)
        if out is not None and upstream and np.isfinite(min(upstream)):
            rows.append({"position": position, "op": op["op_name"], "output": out, "sqnr_db": round(sqnr[out], 2),
                         "loss_db": round(min(upstream) - sqnr[out], 2),
                         "fixed_grid": op["op_name"] in FIXED_OUTPUT_OPS})  # e.g. a softmax's 1/256: not a range choice
    return rows


def int8_error(int8_path: str, float_path: str, inputs: list[np.ndarray], top: int = 5) -> dict:
    """The report's figures: per raw map (in the file's output order) its shape, SQNR and score error; the ``top``
    layers that lose the most SQNR (not the first: its input is the image itself)."""
    q = interpreter_keeping_tensors(int8_path)
    sqnr, score_err = _compare(q, interpreter_keeping_tensors(float_path), _score_maps(int8_path), inputs)
    maps = []
    for d in q.get_output_details():
        name = d["name"]
        row = {"output": name, "shape": [int(v) for v in d["shape"]], "sqnr_db": round(sqnr.get(name, float("nan")), 2)}
        if name in score_err:
            err, cells = score_err[name]
            row.update(score_rms_error=round(float(np.sqrt(err / cells)), 4) if cells else None, scored_cells=cells)
        maps.append(row)
    losses = layer_losses(q, sqnr)
    worst = sorted(losses, key=lambda r: -r["loss_db"])[:top]
    return {"images": len(inputs), "tensors_compared": len(sqnr), "maps": maps, "worst_layers": worst}
