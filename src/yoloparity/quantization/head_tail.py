"""Find, by graph structure alone, the nodes of a YOLO ONNX graph that must stay float.

Why: the head's decode tail joins box coordinates in pixels (0…640) and scores (0…1) in one
tensor; under one int8 scale the scores collapse to a few levels or to zero, and the model finds
nothing. Node names differ between exporters (ours, YOLOv5's, Ultralytics', after
``quant_pre_process``), so the tail is found from the graph's shape, not from names:

* *feature convolutions* are all ``Conv`` nodes except a DFL convolution (a ``Conv`` fed by a
  ``Softmax``, through ``Reshape``/``Transpose`` only — the v8/11 distribution-to-distance step);
* the *tail* is every node downstream of a feature convolution from which no feature convolution
  can be reached: v5's Reshape/Transpose/Sigmoid/Split/Mul/Add/Pow/Concat; v8/11's per-scale
  Concat, Softmax and DFL Conv, Sigmoid, the box arithmetic and the final Concat.

The *head output convolutions* (:func:`head_output_convs`) are the feature convolutions whose every
consumer is in the tail: the 1x1 convolutions that produce the box and score logits (v5: ``m.0-2``;
v8/11: the last convolution of each box and class branch). Quantize keeps them float too: their
int8 rounding lands directly on the scores (measured on YOLOv5n: mAP50-95 drop 0.0115 with them int8,
0.0028 float, for ~8 % of the FLOPs).
"""

from __future__ import annotations

from collections import defaultdict

import onnx

_PASS_THROUGH = {"Reshape", "Transpose", "Identity", "Flatten", "Squeeze", "Unsqueeze"}
_CONV = {"Conv", "ConvTranspose"}


def name_unnamed_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name (exclusion lists are by name; some exporters leave names empty)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"yoloparity_{node.op_type}_{i}"
        seen.add(node.name)
    return model


def _is_dfl_conv(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> bool:
    if node.op_type not in _CONV or not node.input:
        return False
    current = producer.get(node.input[0])
    while current is not None and current.op_type in _PASS_THROUGH:
        current = producer.get(current.input[0]) if current.input else None
    return current is not None and current.op_type == "Softmax"


def head_output_convs(model: onnx.ModelProto, tail: list[onnx.NodeProto] | None = None) -> list[onnx.NodeProto]:
    """The feature convolutions whose outputs go only into the decode tail (the head's logit convolutions)."""
    tail = head_tail_nodes(model) if tail is None else tail
    in_tail = {id(n) for n in tail}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in model.graph.node:
        for name in n.input:
            consumers[name].append(n)
    return [n for n in model.graph.node if n.op_type in _CONV and id(n) not in in_tail
            and all(consumers.get(out) and all(id(c) in in_tail for c in consumers[out]) for out in n.output)]


def head_tail_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The decode-tail nodes of ``model`` in graph order; empty if the graph has no such tail."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in nodes:
        for name in n.input:
            consumers[name].append(n)
    feature = {id(n) for n in nodes if n.op_type in _CONV and not _is_dfl_conv(n, producer)}
    after_feature: dict[int, bool] = {}
    for n in nodes:  # ONNX graphs are topologically sorted
        after_feature[id(n)] = any(
            p is not None and (id(p) in feature or after_feature.get(id(p), False))
            for p in (producer.get(name) for name in n.input)
        )
    reaches_feature: dict[int, bool] = {}
    for n in reversed(nodes):
        reaches_feature[id(n)] = any(
            id(c) in feature or reaches_feature.get(id(c), False) for out in n.output for c in consumers.get(out, [])
        )
    return [n for n in nodes if id(n) not in feature and after_feature[id(n)] and not reaches_feature[id(n)]]
