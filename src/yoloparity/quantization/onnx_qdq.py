"""Static int8 QDQ quantization with ONNX Runtime, and the per-tensor sensitivity that guides reverts.

Calibration runs once per command, image by image (:mod:`.stream_calibration`), into ONNX Runtime's
calibration cache; every quantization (the first, and each with more nodes kept float) reads the ranges
from it, so the accuracy-control loop costs a re-quantization and a validation per step, not a
re-calibration.

Types follow ONNX Runtime's CPU guidance: uint8 asymmetric activations, int8 symmetric
per-channel weights (U8S8), QDQ format.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

import onnx

from ..process_settings import logger_level
from .head_tail import name_unnamed_nodes
from .stream_calibration import CALIBRATION_METHODS, PERCENTILE

__all__ = ["CALIBRATION_METHODS", "PreparedModel", "prepare_float_model", "quantize_qdq", "tensor_sensitivity",
           "nodes_for_tensors"]


@dataclass
class PreparedModel:
    """A float ONNX model ready for quantization: shape-inferred, optimized, every node named."""

    path: str
    input_name: str
    metadata: dict[str, str]


def prepare_float_model(src: str, workdir: str) -> PreparedModel:
    """ONNX Runtime's recommended pre-processing, then unique node names (exclusions are by name)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    original = onnx.load(src)
    metadata = {p.key: p.value for p in original.metadata_props}
    pre = os.path.join(workdir, "float_pre.onnx")
    try:
        with logger_level(None, logging.ERROR):  # ORT's quantization tools log warnings for normal models
            quant_pre_process(src, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
    except Exception:  # pre-processing is an optimization; a model it cannot handle is quantized as it is
        model = original
    name_unnamed_nodes(model)
    out = os.path.join(workdir, "float_named.onnx")
    onnx.save(model, out)
    return PreparedModel(out, model.graph.input[0].name, metadata)


def quantize_qdq(prepared: PreparedModel, out: str, method: str, exclude: list[str], cache: str,
                 weight_scales: dict[str, list[float]] | None = None) -> None:
    """Write the QDQ int8 model of ``prepared`` to ``out`` with the activation ranges of ``cache`` (written by
    :func:`.stream_calibration.calibrate_to_cache` with ``method``), keeping ``exclude`` nodes float; ``weight_scales``
    (float weight name -> per-output-channel scales) replaces the usual max/127 scales of those weights
    (the pair-safe scales of :func:`.saturation.pair_safe_scales`)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    extra: dict = {}
    if method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    if weight_scales:  # per-channel (axis 0, as every Conv weight here), symmetric: zero point 0
        extra["TensorQuantOverrides"] = {
            name: [{"axis": 0, "scale": float(s), "zero_point": 0} if i == 0 else {"scale": float(s), "zero_point": 0}
                   for i, s in enumerate(scales)] for name, scales in weight_scales.items()}
    quantize_static(
        prepared.path, out, calibration_data_reader=None,
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude), calibrate_method=methods[method], extra_options=extra,
        calibration_cache_path=cache,
    )
    model = onnx.load(out)
    del model.metadata_props[:]
    for key, value in prepared.metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key="yoloparity.quantize", value=f"int8 QDQ U8S8 per-channel, {method} calibration"
                             + (f", {len(weight_scales)} weights with pair-safe scales" if weight_scales else ""))
    onnx.save(model, out)


def tensor_sensitivity(qdq_path: str, reader) -> dict[str, float]:
    """Signal-to-quantization-noise ratio (dB) of every quantized activation: lower is worse.

    The SQNR compares each tensor before and after its own QuantizeLinear/DequantizeLinear pair in
    the int8 model (ONNX Runtime's ``qdq_loss_debug``), so it measures the damage done at that
    tensor, not the error accumulated upstream. The probe images run one at a time and only each
    tensor's signal and noise energies are kept, so memory is one image's activations (ONNX Runtime's
    ``collect_activations`` over all images held them all: 3.5 GB of peak RSS for YOLO26n at 640);
    the ratio is the same as over the images concatenated.
    """
    import math

    import numpy as np
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="yoloparity-sqnr-") as tmp:
        augmented = os.path.join(tmp, "qdq_aug.onnx")
        modify_model_output_intermediate_tensors(qdq_path, augmented)
        reader.rewind()
        for inputs in iter(reader.get_next, None):
            matches = create_activation_matching(collect_activations(augmented, [inputs]))
            for name, m in matches.items():
                if m.get("pre_qdq") and m.get("post_qdq"):
                    x = np.asarray(m["pre_qdq"][0], np.float64)
                    signal[name] = signal.get(name, 0.0) + float(np.square(x).sum())
                    noise[name] = noise.get(name, 0.0) + float(np.square(x - m["post_qdq"][0]).sum())
    eps = float(np.finfo("float").eps) ** 2
    return {name: 10 * math.log10(max(signal[name], eps) / max(noise[name], eps)) for name in signal}


def nodes_for_tensors(model_path: str, tensors: list[str]) -> list[list[str]]:
    """For each tensor: its producer and consumers (the nodes that keep it float when excluded)."""
    model = onnx.load(model_path, load_external_data=False)
    producer = {out: n.name for n in model.graph.node for out in n.output}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.name)
    groups = []
    for t in tensors:
        names = ([producer[t]] if t in producer else []) + consumers.get(t, [])
        groups.append(names)
    return groups
