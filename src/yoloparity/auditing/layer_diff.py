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

import numpy as np
import onnx

from ..backends.base import LayersUnavailable
from ..backends.onnx_layers import FLOATS, float_types, layer_of, with_outputs
from ..backends.registry import backend_info
from ..errors import ModelFileError

ATOL, RTOL = 1e-4, 1e-3  # a layer differs where |a-b| > ATOL + RTOL*|a| somewhere (fp32 kernel noise stays inside)


def layer_outputs(backend, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every top-level layer's output for one (1, 3, H, W) float32 input, captured on the backend that runs it
    (:meth:`~yoloparity.backends.base.BackendBase.layer_outputs`)."""
    return backend.layer_outputs(x)


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
    if found and found.get("max_abs") is not None and ref_backend.name == cfg_backend.name and backend_info(ref_backend.name).node_capture:
        node = first_divergent_node(ref_backend.path, cfg_backend.path, x_ref, x_cfg, found["layer"])
        if node:
            result.update(node)
            size = f"max |d| {node['max_abs']:.3g}" if node["max_abs"] is not None else "shapes differ"
            result["detail"] = f"first divergent layer: {found['layer']}, node {node['node']} ({node['op']}), {size}"
    return result


def expose_all(path: str) -> tuple[bytes, list[tuple[str, str, str]]]:
    """The model with every float node output added as a graph output; (node name, op, output) in graph order."""
    model = onnx.load(path)
    types = float_types(model, path)
    order = []
    for node in model.graph.node:
        for out in node.output:
            if types.get(out) in FLOATS:
                order.append((node.name or out, node.op_type, out))
    return with_outputs(model, [(out, types[out]) for _, _, out in order]).SerializeToString(), order


def first_divergent_node(path_a: str, path_b: str, x_a: np.ndarray, x_b: np.ndarray, layer: str | None = None) -> dict | None:
    """Two ONNX files on ONNX Runtime CPU, every node kept as exported: the first node (of ``layer`` when given)
    whose output differs beyond tolerance, or None."""
    import onnxruntime as ort

    bytes_a, order_a = expose_all(path_a)
    bytes_b, order_b = expose_all(path_b)
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
        if layer is not None and layer_of(node) != layer:
            continue
        a, b = np.asarray(va[out], np.float64), np.asarray(vb[out], np.float64)
        if a.shape != b.shape:
            return {"node": node, "op": op, "output": out, "index": index, "max_abs": None}
        diff = np.abs(a - b)
        if (diff > ATOL + RTOL * np.abs(a)).any():
            return {"node": node, "op": op, "output": out, "index": index, "max_abs": float(diff.max())}
    return None
