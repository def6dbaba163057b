"""Percentile activation ranges for a full-integer TFLite file: the converter's min/max ranges, narrowed.

Why: the TFLite converter sets each activation's int8 range from the minimum and maximum it saw on the calibration
images, so one rare large value stretches the scale of a whole tensor and every ordinary value loses resolution (the
ONNX Runtime path keeps every family within 0.3 point by calibrating with percentiles instead). The converter offers
no other choice, so the ranges are narrowed afterwards, in the file:

1. the int8 file runs on the calibration images with every intermediate tensor kept (LiteRT's built-in kernels);
   an int8 tensor takes 256 values, so counting them gives each tensor's exact histogram on its own grid;
2. each activation's new range runs from the ``--percentile`` low to high value of that histogram (zero kept
   inside), rounded to the grid; tensors that must share one scale (the inputs and output of a concatenation,
   reshape, pooling, padding, slice …, which the kernels copy without requantizing) are narrowed together, from
   their summed histograms; tensors with a fixed range (a sigmoid's output, the model's input) and the model's own
   outputs (the raw maps, whose top scores rank the detections) keep theirs;
3. the right operand of every matrix product of two activations (attention's keys and values) gets zero point 0,
   its range widened to the symmetric one around zero: LiteRT's XNNPACK delegate runs such an int8 BATCH_MATMUL only
   then, else LiteRT's own int8 kernel runs it ~20x slower (:func:`yoloparity.quantization.tflite_graph.integer_attention`
   puts each softmax on the left, where its fixed zero point is allowed). This step runs with ``--method none`` too;
4. every bias whose scale is its input's times the weights' is requantized to the new input scale.

It runs in the converter's environment (TensorFlow's flatbuffer tools, LiteRT's interpreter), as a script:
``python tflite_ranges.py IN.tflite OUT.tflite CALIB.npy [--method percentile|mse|none] [--percentile 99.999]
[--images 64]``; it prints one JSON line: how many tensors were narrowed and by how much, how many made symmetric. ``--method mse`` takes
each range of least clipping + rounding error instead of a percentile (:func:`_mse_narrowed`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

# ops whose int8 kernels copy or select values without requantizing: their int8 inputs and outputs share one range
SAME_SCALE_OPS = ("CONCATENATION", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "MAX_POOL_2D", "PAD", "PADV2",
                  "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "GATHER", "GATHER_ND", "RESIZE_NEAREST_NEIGHBOR",
                  "RESIZE_BILINEAR", "MAXIMUM", "MINIMUM", "PACK", "UNPACK", "TILE", "BROADCAST_TO", "DEPTH_TO_SPACE",
                  "SPACE_TO_DEPTH", "MIRROR_PAD")
# ops whose int8 output range is fixed by the kernel (e.g. a sigmoid's 1/256 from -128)
FIXED_OUTPUT_OPS = ("LOGISTIC", "TANH", "SOFTMAX", "LOG_SOFTMAX", "HARD_SWISH")
# ops whose int32 bias is quantized with (input scale x weight scale)
BIASED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _op_names(model, schema) -> list[str]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for code in model.operatorCodes:
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        codes.append(names.get(builtin, str(builtin)))
    return codes


class _Groups:
    """Union-find over tensor indices: tensors that must keep one shared range."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        """The group representative of tensor ``i``."""
        self.parent.setdefault(i, i)
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        """Put tensors ``a`` and ``b`` into one group."""
        self.parent[self.find(a)] = self.find(b)


def interpreter_keeping_tensors(path: str):
    """A LiteRT interpreter of ``path`` on its built-in kernels (no delegate, which would fuse ops and keep no
    intermediate values) with every tensor kept after an invoke, ready to run."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _histograms(path: str, calib: np.ndarray, tensors: list[int], images: int) -> dict[int, np.ndarray]:
    """Counts of each of the 256 int8 values of every tensor in ``tensors`` over the first ``images`` images."""
    if not tensors:
        return {}
    interpreter = interpreter_keeping_tensors(path)
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(detail["dtype"])  # int8, or uint8 with --tflite-input uint8
    counts = {t: np.zeros(256, np.int64) for t in tensors}
    for i in range(min(images, len(calib))):
        x = np.round(np.asarray(calib[i:i + 1]) / np.float32(scale)) + zero_point
        x = np.clip(x, limits.min, limits.max).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        for t in tensors:
            values = interpreter.get_tensor(t)
            counts[t] += np.bincount((values.view(np.uint8) ^ 0x80).ravel(), minlength=256)
    return counts


def _narrowed(counts: np.ndarray, scale: float, zero_point: int, percentile: float) -> tuple[float, int] | None:
    """The (scale, zero point) of the percentile range of a histogram on the grid ``(q - zero_point) * scale``, or None
    when it would not narrow the range."""
    total = counts.sum()
    if total == 0:
        return None
    cumulative = np.cumsum(counts)
    tail = total * (100.0 - percentile) / 100.0
    low_q = int(np.searchsorted(cumulative, tail, side="right")) - 128
    high_q = int(np.searchsorted(cumulative, total - tail, side="left")) - 128
    return _narrower(min((low_q - zero_point) * scale, 0.0), max((high_q - zero_point) * scale, 0.0), scale)


def _narrower(low: float, high: float, scale: float) -> tuple[float, int] | None:
    """The int8 (scale, zero point) of the range [low, high] (zero inside), or None when it is empty or no finer than
    the ``scale`` already set."""
    new_scale = (high - low) / 255.0
    if new_scale <= 0 or new_scale >= scale * 0.999:
        return None
    return new_scale, int(np.clip(round(-128 - low / new_scale), -128, 127))


def _mse_narrowed(counts: np.ndarray, scale: float, zero_point: int) -> tuple[float, int] | None:
    """The (scale, zero point) of the range, on the grid ``(q - zero_point) * scale``, whose int8 quantization of the
    histogram has the least squared error, or None when that is the range already set.

    Why: one fixed percentile clips too much on one family and too little on another (measured: 99.9999 is best on
    YOLOv10n, 99.999 on YOLO26n); the error a range causes can be counted per tensor instead. For a range [lo, hi]
    (zero inside) the error is the clipped values' distance to the edge, squared, plus each value inside rounded on a
    grid of step (hi - lo) / 255, whose mean squared error is step**2 / 12 (values fall anywhere within a step). Both
    terms come from cumulative sums, so every (lo, hi) pair on the 256-point grid is scored at once."""
    total = float(counts.sum())
    if total == 0:
        return None
    x = (np.arange(256, dtype=np.float64) - 128 - zero_point) * scale
    c = counts.astype(np.float64)
    below_n, below_s, below_s2 = np.cumsum(c), np.cumsum(c * x), np.cumsum(c * x * x)
    # values strictly below edge x[i]: prefix sums up to i - 1; strictly above x[j]: the total minus prefix up to j
    n_lt = np.concatenate(([0.0], below_n[:-1]))
    s_lt = np.concatenate(([0.0], below_s[:-1]))
    s2_lt = np.concatenate(([0.0], below_s2[:-1]))
    n_gt, s_gt, s2_gt = below_n[-1] - below_n, below_s[-1] - below_s, below_s2[-1] - below_s2
    low_err = s2_lt - 2 * x * s_lt + x * x * n_lt      # sum over v < lo of (lo - v)^2
    high_err = s2_gt - 2 * x * s_gt + x * x * n_gt     # sum over v > hi of (v - hi)^2
    lows, highs = np.flatnonzero(x <= 0), np.flatnonzero(x >= 0)
    step = (x[highs][None, :] - x[lows][:, None]) / 255.0
    inside = total - n_lt[lows][:, None] - n_gt[highs][None, :]
    error = low_err[lows][:, None] + high_err[highs][None, :] + inside * step * step / 12.0
    error[step <= 0] = np.inf
    i, j = np.unravel_index(int(np.argmin(error)), error.shape)
    return _narrower(float(x[lows[i]]), float(x[highs[j]]), scale)


def _range_groups(graph, ops: list[str], activation) -> tuple[_Groups, dict[int, list[int]], list[int]]:
    """The activations' shared-range groups: (the union-find, each group's tensors by representative, the groups
    that may change — none of their tensors an input, an output or a fixed-range op's output, one range among them)."""
    groups, fixed = _Groups(), set(int(i) for i in graph.inputs) | set(int(o) for o in graph.outputs)
    for op in graph.operators:
        name = ops[op.opcodeIndex]
        ins = [int(i) for i in op.inputs if i >= 0 and activation(int(i))]
        outs = [int(o) for o in op.outputs if activation(int(o))]
        if name in SAME_SCALE_OPS and outs:
            for t in ins + outs[1:]:
                groups.union(t, outs[0])
        if name in FIXED_OUTPUT_OPS:
            fixed.update(outs)
    members: dict[int, list[int]] = {}
    for t in (t for t in range(len(graph.tensors)) if activation(t)):
        members.setdefault(groups.find(t), []).append(t)
    editable = [g for g, ts in members.items() if not any(t in fixed for t in ts)
                and len({(float(graph.tensors[t].quantization.scale[0]), int(graph.tensors[t].quantization.zeroPoint[0]))
                         for t in ts}) == 1]
    return groups, members, editable


def narrow(in_path: str, out_path: str, calib_path: str, percentile: float, images: int,
           method: str = "percentile") -> dict:
    """Write ``out_path``: ``in_path`` with its activation ranges narrowed by ``method`` (percentile, mse, or none)
    and the right operands of activation products made symmetric (see the module docstring)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(in_path)
    graph = model.subgraphs[0]
    ops = _op_names(model, schema)

    def activation(t: int) -> bool:
        tensor = graph.tensors[t]
        q = tensor.quantization
        constant = model.buffers[tensor.buffer].data is not None and len(model.buffers[tensor.buffer].data) > 0
        return (tensor.type == schema.TensorType.INT8 and q is not None and q.scale is not None and len(q.scale) == 1
                and not constant)

    groups, members, editable = _range_groups(graph, ops, activation)
    calib = np.load(calib_path, mmap_mode="r")
    narrowing = editable if method != "none" else []
    counts = _histograms(in_path, calib, [t for g in narrowing for t in members[g]], images)
    old_scale: dict[int, float] = {}
    ratios = []
    for g in narrowing:
        q = graph.tensors[members[g][0]].quantization
        scale, zero_point = float(q.scale[0]), int(q.zeroPoint[0])
        summed = sum(counts[t] for t in members[g])
        found = (_mse_narrowed(summed, scale, zero_point) if method == "mse"
                 else _narrowed(summed, scale, zero_point, percentile))
        if found is None:
            continue
        for t in members[g]:
            old_scale[t] = scale
            graph.tensors[t].quantization.scale = np.array([found[0]], np.float32)
            graph.tensors[t].quantization.zeroPoint = np.array([found[1]], np.int64)
        ratios.append(scale / found[0])
    right = {groups.find(int(op.inputs[1])) for op in graph.operators
             if ops[op.opcodeIndex] == "BATCH_MATMUL" and activation(int(op.inputs[1]))}
    symmetric = _symmetric(graph, [members[g] for g in editable if g in right], old_scale)
    _requantize_biases(model, graph, ops, old_scale)
    flatbuffer_utils.write_model(model, out_path)
    return {"tensors": sum(len(ts) for ts in members.values()), "groups_narrowed": len(ratios), "method": method,
            "percentile": percentile, "images": min(images, len(calib)) if narrowing else 0,
            "resolution_gain_median": float(np.median(ratios)) if ratios else 1.0,
            "resolution_gain_max": float(max(ratios)) if ratios else 1.0, "groups_symmetric": symmetric}


def _symmetric(graph, groups: list[list[int]], old_scale: dict[int, float]) -> int:
    """Each group of tensors given zero point 0 and the symmetric range covering its own (the step's why: the module
    docstring, 3.); ``old_scale`` records each changed tensor's scale before any change. How many groups changed."""
    changed = 0
    for tensors in groups:
        q = graph.tensors[tensors[0]].quantization
        scale, zero_point = float(q.scale[0]), int(q.zeroPoint[0])
        if zero_point == 0:
            continue
        new_scale = max((zero_point + 128) * scale / 128.0, (127 - zero_point) * scale / 127.0)
        for t in tensors:
            old_scale.setdefault(t, float(graph.tensors[t].quantization.scale[0]))
            graph.tensors[t].quantization.scale = np.array([new_scale], np.float32)
            graph.tensors[t].quantization.zeroPoint = np.array([0], np.int64)
        changed += 1
    return changed


def _requantize_biases(model, graph, ops: list[str], old_scale: dict[int, float]) -> None:
    """Every int32 bias of an op whose input scale changed, requantized to (new input scale x weight scale)."""
    done = set()
    for op in graph.operators:
        if ops[op.opcodeIndex] not in BIASED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x, bias_index = int(op.inputs[0]), int(op.inputs[2])
        if x not in old_scale or bias_index in done:
            continue
        bias = graph.tensors[bias_index]
        buffer = model.buffers[bias.buffer]
        values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.int32).astype(np.float64)
        factor = old_scale[x] / float(graph.tensors[x].quantization.scale[0])
        new = np.clip(np.round(values * factor), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        buffer.data = np.frombuffer(new.tobytes(), np.uint8)
        bias.quantization.scale = (np.asarray(bias.quantization.scale, np.float64) / factor).astype(np.float32)
        done.add(bias_index)


def main() -> int:
    """The command line of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("calib")
    parser.add_argument("--percentile", type=float, default=99.999)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--method", choices=("percentile", "mse", "none"), default="percentile")
    args = parser.parse_args()
    print(json.dumps(narrow(args.input, args.output, args.calib, args.percentile, args.images, args.method)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
