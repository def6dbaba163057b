"""The layers of an exported network as ONNX names them: what ONNX Runtime and OpenVINO expose for ``--layers``.

A layer is a top-level module of the checkpoint (``model.0``, ``model.1`` … as its yaml numbers them); the export
scopes each node under ``/model.N/``, so the tensors that leave a layer can be found in the graph and added as
outputs. The backends' ``layer_outputs`` methods use this; the audit compares what they return.
"""

from __future__ import annotations

import re

import onnx
from onnx import TensorProto, helper, shape_inference

from ..errors import ModelFileError

_LAYER = re.compile(r"^/?(model\.\d+)(?:[/.]|$)")
FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)


def layer_of(name: str) -> str | None:
    """The top-level layer (``model.N``) an ONNX node or tensor name belongs to, or None."""
    match = _LAYER.match(name)
    return match.group(1) if match else None


def float_types(model: onnx.ModelProto, path: str) -> dict[str, int]:
    """Element type of every tensor with an inferred type (shape inference), to pick the float ones."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises its own InferenceError types
        raise ModelFileError(path, f"shape inference failed ({exc})") from exc
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {vi.name: vi.type.tensor_type.elem_type for vi in values}


def onnx_layer_tensors(model: onnx.ModelProto, path: str) -> list[tuple[str, str, int]]:
    """(layer, tensor, element type) in graph order: per layer the last float tensor its nodes produce that leaves the layer
    (consumed by another layer's node, an unscoped node such as an output cast, or a graph output)."""
    types = float_types(model, path)
    produced: dict[str, tuple[str | None, int]] = {}
    for position, node in enumerate(model.graph.node):
        for out in node.output:
            produced[out] = (layer_of(node.name or out), position)
    leaving: dict[str, tuple[int, str]] = {}

    def mark(tensor: str, consumer_layer: str | None) -> None:
        layer, position = produced.get(tensor, (None, -1))
        if layer is not None and layer != consumer_layer and types.get(tensor) in FLOATS:
            if layer not in leaving or leaving[layer][0] < position:
                leaving[layer] = (position, tensor)

    for node in model.graph.node:
        consumer = layer_of(node.name or (node.output[0] if node.output else ""))
        for tensor in node.input:
            mark(tensor, consumer)
    for out in model.graph.output:
        mark(out.name, None)
    return [(layer, tensor, types[tensor]) for layer, (_, tensor) in sorted(leaving.items(), key=lambda kv: kv[1][0])]


def with_outputs(model: onnx.ModelProto, tensors: list[tuple[str, int]]) -> onnx.ModelProto:
    """``model`` with ``tensors`` (name, element type) added as graph outputs."""
    existing = {o.name for o in model.graph.output}
    for tensor, elem_type in tensors:
        if tensor not in existing:
            model.graph.output.append(helper.make_tensor_value_info(tensor, elem_type, None))
    return model
