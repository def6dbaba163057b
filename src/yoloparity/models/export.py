"""Export a checkpoint to ONNX with its :class:`ModelSpec` embedded in the metadata.

The graph ends at the raw head tensor (``output0``), the same tensor the torch backend returns,
so decoding and NMS stay shared. Besides our own ``yoloparity.spec`` key we write the metadata
keys the Ultralytics exporter writes (``names``, ``stride``, ``imgsz``, ``task``, ``batch``), so
other tools can read our files too.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import onnx
import torch

from ..errors import YoloParityError
from ..heads import head_format
from ..types import SPEC_KEY, ModelSpec
from .build import YoloNet


@dataclass(frozen=True)
class ExportOptions:
    """ONNX export settings: input size, batch, dynamic axes, opset."""
    imgsz: tuple[int, int] = (640, 640)
    batch: int = 1
    dynamic: bool = False
    opset: int = 17

    def __post_init__(self) -> None:
        """Refuse sizes and batches that cannot export, naming them."""
        if len(self.imgsz) != 2 or min(self.imgsz) < 1 or self.batch < 1:
            raise YoloParityError(None, f"export size {self.imgsz} and batch {self.batch} must be whole numbers >= 1")


def export_onnx(net: YoloNet, spec: ModelSpec, out: str | os.PathLike, options: ExportOptions = ExportOptions()) -> str:
    """Write ``out`` and return its path; the spec's ``imgsz`` becomes the export size."""
    out = os.fspath(out)
    h, w = options.imgsz
    if h % spec.stride or w % spec.stride:
        raise YoloParityError(out, f"export size {h}x{w} is not a multiple of the model stride {spec.stride}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    dummy = torch.zeros(options.batch, 3, h, w)
    dynamic_axes = None
    fmt = head_format(spec.head_format)
    out_axes, fixed_dim = fmt.export_axes()
    if options.dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": out_axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (dummy,),
            out,
            input_names=["images"],
            output_names=["output0"],
            opset_version=options.opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(out)
    # the tracer leaves the class dim symbolic when other dims are dynamic; it is fixed by the head
    model.graph.output[0].type.tensor_type.shape.dim[fixed_dim].dim_value = fmt.channels(spec.nc)
    if (h, w) != spec.imgsz:
        spec = spec.replace(imgsz=(h, w), imgsz_from=f"the export size ({os.path.basename(out)})")
    meta = {
        SPEC_KEY: spec.to_json(),
        "names": repr({i: n for i, n in enumerate(spec.names)}),
        "stride": str(spec.stride),
        "imgsz": repr([h, w]),
        "task": "detect",
        "batch": str(options.batch),
        "description": f"yoloparity export of {os.path.basename(spec.source)} ({spec.family})",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, out)
    return out
