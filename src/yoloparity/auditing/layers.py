"""``--layers``: where two runs of the same network start to differ, each run on its *own* backend and device.

Two levels:

- **layers** (any two backends): every top-level layer of the network (``model.0``, ``model.1`` … as the
  checkpoint's yaml numbers them) is captured where the configuration really runs — torch forward hooks
  on the torch backend (its device and precision), the layer's boundary tensors added as outputs of the
  ONNX Runtime session (same provider and optimization level) or of the OpenVINO model (same compile
  config). A layer is the unit both sides share: a torch module ``model.4`` and the ONNX nodes under
  ``/model.4/`` compute the same thing, whatever fusions either side made inside it.
- **nodes** (two ONNX files on ONNX Runtime): inside the first divergent layer, the first ONNX node whose
  output differs (every float tensor exposed, graph optimizations off so each node stays as exported).

Capturing the configuration's own run matters: a torch fp16 CUDA configuration compared through its ONNX
export on the CPU would compare a graph with itself and report nothing.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from ..errors import ModelFileError

_LAYER = re.compile(r"^/?(model\.\d+)(?:[/.]|$)")
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
ATOL, RTOL = 1e-4, 1e-3  # a layer differs where |a-b| > ATOL + RTOL*|a| somewhere (fp32 kernel noise stays inside)


class LayersUnavailable(Exception):
    """This backend cannot expose its intermediate layers (the reason is the message)."""


def _layer_of(name: str) -> str | None:
    match = _LAYER.match(name)
    return match.group(1) if match else None


def _float_types(model: onnx.ModelProto, path: str) -> dict[str, int]:
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises its own InferenceError types
        raise ModelFileError(path, f"shape inference failed ({exc})") from exc
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {vi.name: vi.type.tensor_type.elem_type for vi in values}


def onnx_layer_tensors(model: onnx.ModelProto, path: str) -> list[tuple[str, str, int]]:
    """(layer, tensor, element type) in graph order: per layer the last float tensor its nodes produce that leaves the layer
    (consumed by another layer's node, an unscoped node such as an output cast, or a graph output)."""
    types = _float_types(model, path)
    produced: dict[str, tuple[str | None, int]] = {}
    for position, node in enumerate(model.graph.node):
        for out in node.output:
            produced[out] = (_layer_of(node.name or out), position)
    leaving: dict[str, tuple[int, str]] = {}

    def mark(tensor: str, consumer_layer: str | None) -> None:
        layer, position = produced.get(tensor, (None, -1))
        if layer is not None and layer != consumer_layer and types.get(tensor) in _FLOATS:
            if layer not in leaving or leaving[layer][0] < position:
                leaving[layer] = (position, tensor)

    for node in model.graph.node:
        consumer = _layer_of(node.name or (node.output[0] if node.output else ""))
        for tensor in node.input:
            mark(tensor, consumer)
    for out in model.graph.output:
        mark(out.name, None)
    return [(layer, tensor, types[tensor]) for layer, (_, tensor) in sorted(leaving.items(), key=lambda kv: kv[1][0])]


def _with_outputs(model: onnx.ModelProto, tensors: list[tuple[str, int]]) -> onnx.ModelProto:
    existing = {o.name for o in model.graph.output}
    for tensor, elem_type in tensors:
        if tensor not in existing:
            model.graph.output.append(helper.make_tensor_value_info(tensor, elem_type, None))
    return model


def _torch_layers(backend, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    import torch

    captured: list[tuple[str, np.ndarray]] = []

    def hook(name):
        def keep(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                captured.append((name, output.detach().to("cpu", torch.float64).numpy()))
        return keep

    handles = [m.register_forward_hook(hook(f"model.{i}")) for i, m in enumerate(backend.net.model)]
    try:
        backend._forward(torch.from_numpy(x))  # the backend's own device, precision and fused or unfused network
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _onnxruntime_layers(backend, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    import onnxruntime as ort

    model = onnx.load(backend.path)
    pairs = onnx_layer_tensors(model, backend.path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the configuration runs
    opts.log_severity_level = 3
    session = ort.InferenceSession(_with_outputs(model, [(t, e) for _, t, e in pairs]).SerializeToString(), opts,
                                   providers=backend.session.get_providers())
    values = session.run([t for _, t, _ in pairs], {backend.input.name: x.astype(backend.input_dtype)})
    return [(layer, np.asarray(v, np.float64)) for (layer, _, _), v in zip(pairs, values)]


def _openvino_layers(backend, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    if not backend.path.endswith(".onnx"):
        raise LayersUnavailable("OpenVINO IR files keep no layer scopes here; give the .onnx the IR was made from")
    pairs = onnx_layer_tensors(onnx.load(backend.path), backend.path)
    model = backend.model.clone()
    model.add_outputs([t for _, t, _ in pairs])
    if backend.dynamic:
        model.reshape(list(x.shape))
    compiled = backend.core.compile_model(model, "CPU", backend.config)
    result = compiled.create_infer_request().infer({0: x})
    by_name = {name: result[port] for port in compiled.outputs for name in port.get_names()}
    return [(layer, np.asarray(by_name[t], np.float64)) for layer, t, _ in pairs if t in by_name]


def layer_outputs(backend, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every top-level layer's output for one (1, 3, H, W) float32 input, captured on the backend that runs it."""
    capture = {"torch": _torch_layers, "onnxruntime": _onnxruntime_layers, "openvino": _openvino_layers}.get(backend.name)
    if capture is None:
        raise LayersUnavailable(f"the {backend.name} backend cannot expose intermediate layers")
    return capture(backend, x)


def first_divergent_layer(ref_backend, cfg_backend, x_ref: np.ndarray, x_cfg: np.ndarray) -> dict:
    """The first layer (reference order) whose output differs beyond tolerance, with every shared layer's
    max |difference| (``profile``); ``layer`` is None when none differs."""
    try:
        ref = layer_outputs(ref_backend, x_ref)
        cfg = dict(layer_outputs(cfg_backend, x_cfg))
    except LayersUnavailable as exc:
        return {"layer": None, "detail": f"layers not compared: {exc}"}
    shared = [(name, a, cfg[name]) for name, a in ref if name in cfg]
    if not shared:
        raise ModelFileError(getattr(cfg_backend, "path", None),
                             "shares no layer names (model.N) with the reference: not an export of the same network")
    profile, found = [], None
    for name, a, b in shared:
        if a.shape != b.shape:
            profile.append({"layer": name, "max_abs": None, "detail": f"shapes {a.shape} vs {b.shape}"})
            found = found or {"layer": name, "detail": f"first divergent layer: {name}, shapes {a.shape} vs {b.shape}"}
            continue
        diff = np.abs(a - b)
        profile.append({"layer": name, "max_abs": float(diff.max()) if diff.size else 0.0})
        if found is None and (diff > ATOL + RTOL * np.abs(a)).any():
            found = {"layer": name, "max_abs": float(diff.max()),
                     "detail": f"first divergent layer: {name} ({ref_backend.name} vs {cfg_backend.name}), "
                               f"max |d| {float(diff.max()):.3g}"}
    result = found or {"layer": None, "detail": f"no layer differs beyond |d| <= {ATOL:g} + {RTOL:g}*|ref| "
                                                f"({len(shared)} layers compared)"}
    result.update({"backends": [ref_backend.name, cfg_backend.name], "layers_compared": len(shared), "profile": profile,
                   "tolerance": {"atol": ATOL, "rtol": RTOL}})
    if found and found.get("max_abs") is not None and ref_backend.name == cfg_backend.name == "onnxruntime":
        node = first_divergent_node(ref_backend.path, cfg_backend.path, x_ref, x_cfg, found["layer"])
        if node:
            result.update(node)
            size = f"max |d| {node['max_abs']:.3g}" if node["max_abs"] is not None else "shapes differ"
            result["detail"] = f"first divergent layer: {found['layer']}, node {node['node']} ({node['op']}), {size}"
    return result


def _expose_all(path: str) -> tuple[bytes, list[tuple[str, str, str]]]:
    """The model with every float node output added as a graph output; (node name, op, output) in graph order."""
    model = onnx.load(path)
    types = _float_types(model, path)
    order = []
    for node in model.graph.node:
        for out in node.output:
            if types.get(out) in _FLOATS:
                order.append((node.name or out, node.op_type, out))
    return _with_outputs(model, [(out, types[out]) for _, _, out in order]).SerializeToString(), order


def first_divergent_node(path_a: str, path_b: str, x_a: np.ndarray, x_b: np.ndarray, layer: str | None = None) -> dict | None:
    """Two ONNX files on ONNX Runtime CPU, every node kept as exported: the first node (of ``layer`` when given)
    whose output differs beyond tolerance, or None."""
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

    def feed(session, x):
        dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
        return {session.get_inputs()[0].name: x.astype(dtype)}

    names = [out for _, _, out in common]
    va = dict(zip(names, sa.run(names, feed(sa, x_a))))
    vb = dict(zip(names, sb.run(names, feed(sb, x_b))))
    for index, (node, op, out) in enumerate(common):
        if layer is not None and _layer_of(node) != layer:
            continue
        a, b = np.asarray(va[out], np.float64), np.asarray(vb[out], np.float64)
        if a.shape != b.shape:
            return {"node": node, "op": op, "output": out, "index": index, "max_abs": None}
        diff = np.abs(a - b)
        if (diff > ATOL + RTOL * np.abs(a)).any():
            return {"node": node, "op": op, "output": out, "index": index, "max_abs": float(diff.max())}
    return None
