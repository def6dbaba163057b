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
    from ..model import export_model

    path = resolve_model_path(model_path)
    if path.endswith(".pt"):
        return export_model(path, os.path.join(workdir, "float.onnx"), imgsz=imgsz, dynamic=False)
    if not path.endswith(".onnx"):
        raise ModelFileError(path, "quantize reads a .pt checkpoint or a float .onnx model")
    return path


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
