"""``--layers``: run two ONNX models of the same network with every intermediate tensor exposed and
name the first node, in graph order, whose output differs beyond tolerance."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from ..errors import ModelFileError


def _expose_all(path: str) -> tuple[bytes, list[tuple[str, str, str]]]:
    """The model with every float node output added as a graph output; (node name, op, output) in graph order."""
    model = onnx.load(path)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises its own InferenceError types
        raise ModelFileError(path, f"shape inference failed ({exc})") from exc
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    existing = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for out in node.output:
            if types.get(out) == TensorProto.FLOAT:
                order.append((node.name or out, node.op_type, out))
                if out not in existing:
                    model.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
                    existing.add(out)
    return model.SerializeToString(), order


def first_divergent_layer(path_a: str, path_b: str, x: np.ndarray, atol: float = 1e-4, rtol: float = 1e-3) -> dict | None:
    """The first node whose output differs by more than ``atol + rtol * |a|`` anywhere, or None."""
    import onnxruntime as ort

    bytes_a, order_a = _expose_all(path_a)
    bytes_b, order_b = _expose_all(path_b)
    outputs_b = {out for _, _, out in order_b}
    common = [(name, op, out) for name, op, out in order_a if out in outputs_b]
    if not common:
        raise ModelFileError(path_b, "shares no intermediate tensor names with the reference model: not the same network export")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as exported
    opts.log_severity_level = 3
    sa = ort.InferenceSession(bytes_a, opts, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(bytes_b, opts, providers=["CPUExecutionProvider"])
    names = [out for _, _, out in common]
    feed_a = {sa.get_inputs()[0].name: x}
    feed_b = {sb.get_inputs()[0].name: x}
    va = dict(zip(names, sa.run(names, feed_a)))
    vb = dict(zip(names, sb.run(names, feed_b)))
    for index, (node, op, out) in enumerate(common):
        a, b = np.asarray(va[out], np.float64), np.asarray(vb[out], np.float64)
        if a.shape != b.shape:
            return {"node": node, "op": op, "output": out, "index": index, "detail": f"shapes {a.shape} vs {b.shape}"}
        diff = np.abs(a - b)
        if (diff > atol + rtol * np.abs(a)).any():
            return {"node": node, "op": op, "output": out, "index": index, "max_abs": float(diff.max()),
                    "detail": f"first divergent layer: {node} ({op}), max |d| {float(diff.max()):.3g}"}
    return None
