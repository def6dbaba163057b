"""The int8 formats ``quantize`` makes, as data: each one's name, file, the backends that run it and its runner.

The CLI's ``--format`` choices and help, ``QuantizeOptions``' check, ``run_quantize``'s dispatch and ``bench``'s
choice of how to make an int8 file for a backend all read this one table (before it, the names were listed in the
CLI and the options separately and dispatched by string tests).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class QuantizeFormat:
    """One int8 format: ``runner`` is "module:function" with ``run_quantize``'s signature (imported only when it
    runs); ``runs_on`` the backends that run its file, the first being the one its accuracy is measured on;
    ``calib_methods``: the ranges ``--calib-method`` can choose, the first its default (none: it calibrates its own
    way)."""

    name: str
    suffix: str
    runs_on: tuple[str, ...]
    runner: str
    summary: str
    calib_methods: tuple[str, ...] = ()

    def run(self, *args, **kwargs):
        """Run this format's quantization (``run_quantize``'s arguments)."""
        module_name, function = self.runner.split(":")
        return getattr(importlib.import_module(module_name), function)(*args, **kwargs)


QUANTIZE_FORMATS: dict[str, QuantizeFormat] = {f.name: f for f in (
    QuantizeFormat("onnx-qdq", ".onnx", ("onnxruntime", "openvino"), "yoloparity.quantization.runner:run_onnx_qdq",
                   "ONNX Runtime static QDQ (U8S8, per-channel), with accuracy control",
                   # percentile first: chosen by measurement on every family (BENCHMARKS.md, "Choosing the
                   # calibration method")
                   calib_methods=("percentile", "minmax", "entropy")),
    QuantizeFormat("openvino-int8", ".xml", ("openvino",), "yoloparity.quantization.openvino_nncf:run_openvino_int8",
                   "an OpenVINO IR (.xml) quantized by NNCF with the same structural exclusions, NNCF's accuracy "
                   "control within --max-drop (needs pip install \"yoloparity[nncf]\")"),
    QuantizeFormat("tflite-int8", ".tflite", ("litert",), "yoloparity.quantization.tflite_export:run_tflite_int8",
                   "full-integer TFLite with int8 input and one int8 output per raw head map via onnx2tf (needs "
                   "scripts/setup_tflite.sh), activation ranges narrowed to percentiles, validated on the litert "
                   "backend",
                   # percentile first: within a point on the most families (tflite_range_choice, BENCHMARKS.md)
                   calib_methods=("percentile", "mse", "minmax")),
)}
FORMATS = tuple(QUANTIZE_FORMATS)
# every --calib-method some format takes, in the order the table names them
CALIB_METHODS = tuple(dict.fromkeys(m for f in QUANTIZE_FORMATS.values() for m in f.calib_methods))
DEFAULT_FORMAT = FORMATS[0]


def quantize_format(name: str) -> QuantizeFormat:
    """The entry of format ``name``; an unknown one is refused with the known ones."""
    fmt = QUANTIZE_FORMATS.get(name)
    if fmt is None:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {name!r}")
    return fmt


def int8_format_for(backend: str) -> QuantizeFormat | None:
    """The first format whose file ``backend`` runs (what ``bench`` makes for an int8 configuration), or None."""
    return next((f for f in QUANTIZE_FORMATS.values() if backend in f.runs_on), None)


TFLITE_INPUTS = ("int8", "uint8")  # a full-integer TFLite file's input type (--tflite-input); the first is the default
