"""``quantize --format openvino-int8``: OpenVINO int8 the way its users make it — NNCF — with our ignored scope.

NNCF (OpenVINO's own compression library) inserts FakeQuantize ops into the OpenVINO model and calibrates them;
its ``quantize_with_accuracy_control`` then returns the most damaging layers to float while a validation metric
drops more than ``max_drop`` — the same loop as our ONNX Runtime path, NNCF's implementation. Here:

* the float model is our static ONNX export read by OpenVINO, and NNCF's ``IgnoredScope`` holds the nodes our
  structural analysis keeps float (:func:`.float_model.structural_exclusions`: the head's decode tail, which joins
  pixels and 0–1 scores in one tensor, and its logit convolutions). Ultralytics' int8 export of end-to-end heads
  gives near-zero mAP exactly because that tail is quantized;
* calibration and validation take the images read and letterboxed once (:class:`.image_set.QuantImages`), and the
  validation metric NNCF optimizes is our mAP50-95 on the held-out images;
* the result is an OpenVINO IR (``.xml`` + ``.bin``) with the model spec in its ``rt_info``, which the ``openvino``
  backend reads like any other file.

NNCF is optional (``pip install "yoloparity[nncf]"``); without it this format says so and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from typing import Callable

from ..errors import BackendUnavailableError, ModelFileError
from ..io.atomic import copy_file
from ..process_settings import logger_level
from ..types import SPEC_KEY
from .evaluation import QuantReport, Step, accuracy_figures, measure_latency, peak_rss_mb, score_model, score_raw
from .float_model import quantize_size, static_float_onnx, structural_exclusions
from .image_set import overlap_notes, read_images
from .onnx_qdq import prepare_float_model


def _require_nncf():
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError(None, f"--format openvino-int8 needs NNCF and OpenVINO ({exc.name} is missing): "
                                            "pip install \"yoloparity[nncf]\"") from None
    return nncf, ov


def _output_path(model_path: str, out: str | None) -> str:
    out = out or os.path.splitext(os.path.basename(model_path))[0] + "-int8.xml"
    if not out.endswith(".xml"):
        raise ModelFileError(out, "an OpenVINO int8 model is an IR: --out must end in .xml (the .bin is written beside it)")
    return out


def _save_ir(model, spec_json: str, path: str) -> None:
    """Write the IR atomically (.bin first, then .xml, each renamed into place) with the spec in ``rt_info``."""
    import openvino as ov

    model.set_rt_info(spec_json, ["model_info", SPEC_KEY])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    folder = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".yoloparity-ir-")
    try:
        tmp_xml = os.path.join(folder, "model.xml")
        ov.save_model(model, tmp_xml, compress_to_fp16=False)
        os.replace(tmp_xml[:-4] + ".bin", path[:-4] + ".bin")
        os.replace(tmp_xml, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_openvino_int8(model_path: str, data: str, out: str | None, options, log: Callable[[str], None] = print,
                      progress_factory=None) -> QuantReport:
    """NNCF post-training quantization of the float model (``--max-steps 0``) or NNCF's accuracy-controlled
    quantization within ``--max-drop`` on the held-out images, scored like every other format."""
    nncf, ov = _require_nncf()
    out = _output_path(model_path, out)
    tmp = tempfile.mkdtemp(prefix="yoloparity-nncf-")
    try:
        float_src = static_float_onnx(model_path, options.imgsz, tmp)
        prepared = prepare_float_model(float_src, tmp)
        from ..yolo_model import load_model

        with load_model(prepared.path, backend="openvino") as float_model:
            spec = float_model.spec
        size, size_note = quantize_size(prepared.path, options.imgsz, spec.square_size)
        options = dataclasses.replace(options, imgsz=size)
        images = read_images(data, spec, options, log, progress_factory)
        notes = overlap_notes(images) + ([size_note] if size_note else [])
        structural = structural_exclusions(prepared.path, options.exclude)
        core = ov.Core()
        model = core.read_model(prepared.path)
        known = {op.get_friendly_name() for op in model.get_ops()}
        scope = nncf.IgnoredScope(names=[n for n in structural if n in known], validate=False)
        log(f"float model on OpenVINO: measuring mAP on {len(images.measured)} images")
        float_scores = score_model(prepared.path, images, options.threads, backend="openvino")
        calibration = nncf.Dataset(images.calibration, lambda image: image.tensor())
        steps, int8_scores, chosen = _quantize_within(nncf, model, calibration, scope, images, spec, float_scores,
                                                      options, tmp, log)
        copy_file(chosen[:-4] + ".bin", out[:-4] + ".bin")  # the chosen IR as written and measured (spec included);
        copy_file(chosen, out)  # .bin first, then the .xml that names it
        figures = accuracy_figures(float_scores, int8_scores, images, options, log)
        held = images.held_out_ids()
        (f_map, f_map50), (q_map, q_map50) = float_scores.map(held), int8_scores.map(held)
        kept = _kept_float(core.read_model(out), known, structural)
        latency = measure_latency({"float": prepared.path, "int8": out}, images.held_out[0].tensor(), options.threads,
                                  options.latency_repeats, backend="openvino")
        if figures["verdict"] != "within":
            notes.append(f"the held-out drop {f_map - q_map:+.4f} was not shown within the budget of "
                         f"{options.max_drop}: {figures['verdict_text']}")
        return QuantReport(
            model=model_path, output=out, format="openvino-int8", calib_method="NNCF (OpenVINO FakeQuantize)",
            calib_images=len(images.calibration), val_images=len(held), overlap=images.overlap,
            float_map50_95=f_map, float_map50=f_map50, float_detections=float_scores.detections(held),
            int8_map50_95=q_map, int8_map50=q_map50, int8_detections=int8_scores.detections(held), drop=f_map - q_map,
            max_drop=options.max_drop, within_budget=figures["verdict"] == "within",
            exclude_mode=options.exclude if options.exclude in ("auto", "none") else "names",
            excluded_structural=structural, kept_float=kept, steps=steps,
            float_size_bytes=os.path.getsize(float_src), int8_size_bytes=os.path.getsize(out[:-4] + ".bin"),
            float_latency_ms=latency["float"], int8_latency_ms=latency["int8"],
            speedup=latency["float"] / latency["int8"], threads=options.threads,
            notes=notes + ["float figures are the float ONNX model run on OpenVINO"],
            calibration_skipped=images.skipped, accuracy=figures["accuracy"], verdict=figures["verdict"],
            peak_rss_mb=peak_rss_mb(),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _settings(nncf) -> dict:
    """NNCF's settings here, chosen by measurement (trained YOLOv8n, 128 calibration images, drop held-out / all):
    its defaults (performance preset: symmetric activations; min/max ranges) +0.0193 / +0.0134; mixed preset
    (asymmetric activations, as SiLU outputs are) +0.0078 / +0.0063; mixed with mean-quantile ranges +0.0069 /
    +0.0077; mixed with histogram ranges −0.0064 / −0.0039 — the same lesson as ONNX Runtime's percentile
    calibration: the rare large activations must not set the scale."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return {"preset": nncf.QuantizationPreset.MIXED, "advanced_parameters": AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)}


def _quantize_within(nncf, model, calibration, scope, images, spec, float_scores, options, tmp: str, log):
    """``nncf.quantize`` first; when its drop (held out, or on all images) is over ``--max-drop`` and steps are
    allowed, ``nncf.quantize_with_accuracy_control`` (our held-out mAP50-95 as its metric, the drop absolute) and the
    better of the two. Returns the steps, the chosen model's scores and its IR path (in ``tmp``)."""
    held, every = images.held_out_ids(), [image.entry.id for image in images.measured]
    f_held, f_all = float_scores.map(held)[0], float_scores.map(every)[0]

    def measured(candidate, name: str):
        path = os.path.join(tmp, f"{name}.xml")
        _save_ir(candidate, spec.to_json(), path)
        scores = score_model(path, images, options.threads, backend="openvino")
        q_map, q_map50 = scores.map(held)
        step = Step(len(scope.names), q_map, q_map50, scores.detections(held), drop_all=f_all - scores.map(every)[0])
        return step, scores, path, max(f_held - q_map, step.drop_all)

    subset = len(images.calibration)
    settings = _settings(nncf)
    log(f"NNCF quantize: {subset} calibration images, {len(scope.names)} nodes kept float, mixed preset, histogram "
        "activation ranges")
    with logger_level("nncf", logging.ERROR):
        first = measured(nncf.quantize(model, calibration, subset_size=subset, ignored_scope=scope, **settings), "nncf")
    log(f"int8 mAP50-95 {first[0].map50_95:.4f} (drop {f_held - first[0].map50_95:+.4f} held out, "
        f"{first[0].drop_all:+.4f} on all images)")
    if first[3] <= options.max_drop or options.max_steps == 0:
        return [first[0]], first[1], first[2]

    def validate(compiled, items) -> float:
        """mAP50-95 of a compiled candidate on ``items`` (held-out images, or the subsets NNCF ranks with)."""
        request = compiled.create_infer_request()
        output = compiled.outputs[0]
        chosen = list(items)
        scores = score_raw(lambda x: request.infer({0: x})[output], spec, images, "nncf", "openvino", subset=chosen)
        return scores.map([image.entry.id for image in chosen])[0]

    log(f"NNCF accuracy control (max drop {options.max_drop}, at most {options.max_steps} iterations)")
    with logger_level("nncf", logging.ERROR):
        controlled = nncf.quantize_with_accuracy_control(
            model, calibration, nncf.Dataset(images.held_out, lambda image: image.tensor()), validation_fn=validate,
            subset_size=subset, max_drop=options.max_drop, drop_type=nncf.DropType.ABSOLUTE, ignored_scope=scope,
            preset=settings["preset"], advanced_quantization_parameters=settings["advanced_parameters"],
            advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                max_num_iterations=options.max_steps))
    second = measured(controlled, "nncf-controlled")
    log(f"accuracy-controlled int8 mAP50-95 {second[0].map50_95:.4f} (drop {f_held - second[0].map50_95:+.4f} held "
        f"out, {second[0].drop_all:+.4f} on all images)")
    best = second if second[3] < first[3] else first
    return [first[0], second[0]], best[1], best[2]


_PASS = {"Concat", "MaxPool", "Interpolate", "Reshape", "Transpose", "StridedSlice", "Split", "VariadicSplit",
         "Convert", "Squeeze", "Unsqueeze"}


def _fed_by_fake_quantize(node) -> bool:
    """Whether a convolution's activation input comes from a FakeQuantize, through ops that move values only."""
    stack, seen = [node.input_value(0).get_node()], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kind = current.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind in _PASS:
            stack += [current.input_value(i).get_node() for i in range(current.get_input_size())
                      if current.input_value(i).get_node().get_type_name() != "Constant"]
    return False


def _kept_float(quantized, known: set[str], structural: list[str]) -> list[str]:
    """The structural scope, and the convolutions NNCF left float (its accuracy control's reverts), by name."""
    convs = [op for op in quantized.get_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")
             and op.get_friendly_name() in known]
    return sorted(set(structural) | {op.get_friendly_name() for op in convs if not _fed_by_fake_quantize(op)})
