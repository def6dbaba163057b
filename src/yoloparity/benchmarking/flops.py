"""Model GFLOPs counted from the ONNX graph (2 x multiply-accumulates, as Ultralytics reports them).

Counted from the graph rather than quoted, so a model with another width, depth or input size
gets its own figure: shapes are inferred at a static (1, 3, H, W) input, then every Conv,
ConvTranspose, MatMul and Gemm contributes 2·MACs. Element-wise ops are left out (they are a few
percent of a YOLO model and not what a matrix-multiply peak measures).
"""

from __future__ import annotations

import math

import onnx
from onnx import shape_inference


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_gflops(onnx_path: str, imgsz: tuple[int, int]) -> float:
    """GFLOPs of one image at ``imgsz`` (H, W)."""
    model = onnx.load(onnx_path)
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, imgsz[0], imgsz[1])):
        d.ClearField("dim_param")
        d.dim_value = v
    try:  # ONNX Runtime's symbolic inference follows Shape/Resize chains that onnx's own stops at
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:
        model = shape_inference.infer_shapes(model)
    shapes = _shapes(model)
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out or 0 in out:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            if not w:
                continue
            # weight (Cout, Cin/group, kh, kw): each output element costs Cin/group·kh·kw MACs
            per_output = math.prod(w[1:]) if node.op_type == "Conv" else w[1] * math.prod(w[2:])
            macs += math.prod(out) * per_output
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if a:
                macs += math.prod(out) * a[-1]
    return 2 * macs / 1e9
