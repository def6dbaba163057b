"""The float model a quantization starts from, and the nodes it keeps float by structure or by name.

Shared by the three int8 formats (ONNX Runtime QDQ, OpenVINO with NNCF, TFLite), so none imports another's runner.
"""

from __future__ import annotations

import os

from ..errors import ModelFileError
from ..models.hub import resolve_model_path
from .head_tail import head_output_convs, head_tail_nodes, name_unnamed_nodes


def static_float_onnx(model_path: str, imgsz: int | None, workdir: str) -> str:
    """The float ONNX to quantize: a .pt is exported at a static (1, 3, imgsz, imgsz), by default at the size it was
    trained at; an .onnx is taken as it is (its own input size)."""
    from ..yolo_model import export_model

    path = resolve_model_path(model_path)
    if path.endswith(".pt"):
        return export_model(path, os.path.join(workdir, "float.onnx"), imgsz=imgsz, dynamic=False)
    if not path.endswith(".onnx"):
        raise ModelFileError(path, "quantize reads a .pt checkpoint or a float .onnx model")
    return path


def quantize_size(float_onnx: str, asked: int | None, spec_size: int) -> tuple[int, str | None]:
    """The square size a quantize run feeds (calibration, scoring, latency), and a note when it is not the one asked
    for: a static file's own input size (the file cannot take another), else ``asked``, else the model's own."""
    import onnx

    dims = onnx.load(float_onnx, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    static = [d.dim_value for d in list(dims)[2:4] if d.HasField("dim_value") and d.dim_value > 0]
    if len(static) == 2:
        if static[0] != static[1]:
            raise ModelFileError(float_onnx, f"has a static {static[0]}x{static[1]} input; quantize measures square "
                                             "inputs: export the .pt with a square --imgsz, or --dynamic")
        note = None if asked in (None, static[0]) else (f"the model has a static {static[0]}x{static[1]} input: "
                                                          f"quantized and measured at {static[0]}, not --imgsz {asked}")
        return static[0], note
    return asked or spec_size, None


def structural_exclusions(prepared_path: str, mode: str) -> list[str]:
    """The nodes kept float by ``--exclude``: ``auto`` finds the head's decode tail and logit convolutions by graph
    structure (:mod:`.head_tail`), ``none`` keeps nothing, else the names given (checked against the model)."""
    import onnx

    model = name_unnamed_nodes(onnx.load(prepared_path, load_external_data=False))
    if mode == "none":
        return []
    if mode == "auto":
        tail_nodes = head_tail_nodes(model)
        if not tail_nodes:
            raise ModelFileError(prepared_path, "found no head decode tail after the last convolutions; "
                                                "name the nodes to keep float with --exclude NAME,...")
        return [n.name for n in head_output_convs(model, tail_nodes)] + [n.name for n in tail_nodes]
    names = [n.strip() for n in mode.split(",") if n.strip()]
    known = {n.name for n in model.graph.node}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelFileError(prepared_path, f"--exclude names nodes not in the model: {unknown[:5]}")
    return names
