"""OpenVINO backend (CPU): ONNX files and OpenVINO IR (``.xml`` + ``.bin``).

Precision is pinned: OpenVINO's CPU plugin runs fp32 models in bf16 by default on CPUs with
AMX/AVX512-BF16, which silently changes detections; we set ``INFERENCE_PRECISION_HINT=f32``
(``fp16``/``bf16`` only when asked; ``--precision runtime`` sets none, to run the file as OpenVINO's defaults
would), and ``--deterministic`` sets ``EXECUTION_MODE_HINT=ACCURACY``. What a run computed in is read back from the
compiled model (:meth:`OpenVINOBackend.compute_precision`).

Dynamic-shape files are compiled once per input shape (reshaped to it, cached): OpenVINO 2026.4
executed our dynamic-shape int8 QDQ model wrongly (415 boxes above 0.25 objectness on bus.jpg
against ONNX Runtime's 46; mAP50-95 0.074 vs 0.284), while the same file reshaped to a static
shape matches ONNX Runtime. Static shapes are also what the CPU plugin optimizes best. The cache
keeps the last ``MAX_COMPILED`` shapes (each compiled model holds its own memory; validation in
rect mode meets a few dozen shapes, which unbounded took peak memory from 1.3 to 3.9 GB).

Metadata: an ONNX file's own metadata, an IR's ``rt_info`` (``model_info`` keys, as the
Ultralytics exporter writes them), or a ``metadata.yaml`` beside the IR.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import BackendBase, LayersUnavailable, ShapeConstraints, check_model_file
from .compute_precision import ComputePrecision, openvino_type
from .int8_weights import runtime_notes
from .metadata import (
    check_head_output,
    head_notes,
    onnx_file_precision,
    sidecar_metadata,
    spec_from_metadata,
    static_dim,
)
from .registry import backend_info, is_default_precision, precision_info

MAX_COMPILED = 6


def _ir_metadata(model, path: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    for key in ("names", "stride", "imgsz", "task", "yoloparity.spec"):
        try:
            if model.has_rt_info(["model_info", key]):
                meta[key] = model.get_rt_info(["model_info", key]).astype(str)
        except (RuntimeError, AttributeError):
            continue
    if not meta:
        value, _ = sidecar_metadata(path)
        meta = {str(k): (v if isinstance(v, str) else repr(v)) for k, v in (value or {}).items()}
    return meta


def _ir_precision(model) -> str:
    """"int8" when the IR holds FakeQuantize ops or int8/uint8 constants, "fp16" for f16 constants, else "fp32"."""
    kinds = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) or kinds & {"i8", "u8"}:
        return "int8"
    return "fp16" if "f16" in kinds else "fp32"


def _dims(partial_shape) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


class OpenVINOBackend(BackendBase):
    """An ONNX file or OpenVINO IR compiled for the CPU, with the inference-precision hint asked for (an int8
    or fp16 file computes as saved); a dynamic model is compiled once per input shape and kept."""
    name = "openvino"

    def __init__(self, path: str, device: str = "cpu", threads: int | None = None, deterministic: bool = False,
                 precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError(path, "backend 'openvino' needs the package openvino (pip install \"yoloparity[openvino]\")") from exc
        check_model_file(path, device, "openvino")
        backend_info("openvino").check_precision(precision, device, path)
        is_ir = path.endswith(".xml")
        if is_ir and not os.path.exists(path[:-4] + ".bin"):
            raise ModelFileError(path, f"OpenVINO IR needs its weights file {os.path.basename(path[:-4] + '.bin')} beside it; it is missing")
        core = ov.Core()
        try:
            model = core.read_model(path)
        except RuntimeError as exc:
            raise ModelFileError(path, f"OpenVINO cannot read this file ({str(exc).splitlines()[0][:200]})") from exc
        if len(model.inputs) != 1:
            raise ModelFileError(path, f"expected one image input, found {len(model.inputs)}")
        in_shape = _dims(model.inputs[0].get_partial_shape())
        if len(in_shape) != 4 or in_shape[1] not in (None, 3):
            raise ModelFileError(path, f"unexpected input shape {in_shape}: expected (N, 3, H, W)")
        names = [o.get_any_name() if o.get_names() else "" for o in model.outputs]
        self.output_index = names.index("output0") if "output0" in names else 0
        out_shape = _dims(model.outputs[self.output_index].get_partial_shape())
        if is_ir:
            meta, proto = _ir_metadata(model, path), None
        else:
            import onnx

            proto = onnx.load(path, load_external_data=False)  # once, for the metadata and the stored precision
            meta = {p.key: p.value for p in proto.metadata_props}
        self.spec = spec_from_metadata(path, meta, (static_dim(in_shape[2]), static_dim(in_shape[3])), out_shape)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision_info(precision).openvino_hint:  # none for "runtime": the plugin's own default
            config["INFERENCE_PRECISION_HINT"] = precision_info(precision).openvino_hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if deterministic:
            config["EXECUTION_MODE_HINT"] = "ACCURACY"
        self.core, self.model, self.config = core, model, config
        self.path = path
        self._compiled: OrderedDict[tuple[int, ...], tuple] = OrderedDict()
        self._compiled_hint = None  # the inference precision OpenVINO reports for the model last compiled
        self.runtime_default = core.get_property("CPU", "INFERENCE_PRECISION_HINT")  # what no hint would give
        self.dynamic = any(d is None for d in in_shape)
        if not self.dynamic:
            self._compile(tuple(in_shape))
        self.device = "cpu"
        # a quantized or fp16 file computes in its own precision whatever the hint asks (for reports)
        stored = _ir_precision(model) if is_ir else onnx_file_precision(proto)
        self.precision = precision if is_default_precision(stored) else stored
        self.notes = runtime_notes(path, "cpu") + head_notes(self.spec)
        self.constraints = ShapeConstraints(batch=static_dim(in_shape[0]), height=static_dim(in_shape[2]), width=static_dim(in_shape[3]))

    def _compile(self, shape: tuple[int, ...]) -> tuple:
        """The compiled model and its infer request for one static input shape."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
        else:
            if len(self._compiled) >= MAX_COMPILED:
                self._compiled.popitem(last=False)
            model = self.model.clone()
            if self.dynamic:
                model.reshape({0: list(shape)})
            try:
                compiled = self.core.compile_model(model, "CPU", self.config)
            except RuntimeError as exc:
                raise ModelFileError(self.path, f"OpenVINO cannot compile this model for CPU "
                                                f"({str(exc).splitlines()[0][:200]})") from exc
            self._compiled[shape] = (compiled, compiled.create_infer_request())
            self._compiled_hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        return self._compiled[shape]

    def compute_precision(self) -> ComputePrecision:
        """The inference precision of the model last compiled, as OpenVINO reports it, beside the CPU plugin's own
        default on this machine (bf16 on CPUs with AVX512-BF16 or AMX: what a run without a hint gets)."""
        default = openvino_type(self.runtime_default)
        if self._compiled_hint is not None:
            hint, source = self._compiled_hint, "the compiled model's INFERENCE_PRECISION_HINT"
        else:
            hint = self.config.get("INFERENCE_PRECISION_HINT", self.runtime_default)
            source = "the hint it compiles with (no shape compiled yet)"
        computes = openvino_type(hint)
        if precision_info(self.precision).quantized:
            computes, default = f"int8 ops, {computes} elsewhere", f"int8 ops, {default} elsewhere"
        return ComputePrecision(computes, f"OpenVINO: {source}", default)

    def layer_outputs(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The tensors leaving each layer added as outputs of this model, compiled with this backend's config."""
        if not self.path.endswith(".onnx"):
            raise LayersUnavailable("OpenVINO IR files keep no layer scopes here; give the .onnx the IR was made from")
        import onnx

        from .onnx_layers import onnx_layer_tensors

        pairs = onnx_layer_tensors(onnx.load(self.path), self.path)
        model = self.model.clone()
        model.add_outputs([t for _, t, _ in pairs])
        if self.dynamic:
            model.reshape(list(x.shape))
        compiled = self.core.compile_model(model, "CPU", self.config)
        result = compiled.create_infer_request().infer({0: x})
        by_name = {name: result[port] for port in compiled.outputs for name in port.get_names()}
        return [(layer, np.asarray(by_name[t], np.float64)) for layer, t, _ in pairs if t in by_name]

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        compiled, request = self._compile(tuple(batch.shape))
        result = request.infer({0: batch})
        out = np.array(result[compiled.outputs[self.output_index]], dtype=np.float32)
        check_head_output(self.path, self.spec, out, batch.shape, "output")
        return out

    def _release(self) -> None:
        self._compiled.clear()


def create(path: str, device: str = "cpu", **options) -> OpenVINOBackend:
    """The registry's factory for ``openvino``."""
    return OpenVINOBackend(path, device=device, **options)
