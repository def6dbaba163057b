"""``yoloparity quantize``: int8 with an accuracy budget, proven by mAP on held-out images.

The loop (in the spirit of NNCF's accuracy control, built on ONNX Runtime's tools), on images read and
letterboxed once (:mod:`.image_set`):

1. float mAP50-95 on every measured image (held-out and calibration);
2. calibrate image by image into ONNX Runtime's calibration cache (:mod:`.stream_calibration`), quantize with
   the excluded nodes kept float (``auto``: the head's decode tail, found by graph structure) and measure;
   then emulate the int16 pair sums of CPUs without VNNI on calibration images (:mod:`.saturation`),
   report the convolutions that saturate there, and re-quantize every convolution with pair-safe scales
   that cannot saturate, so the model computes the same integers on every x86 CPU and the drop measured
   on this CPU is the drop on all of them;
3. while the drop on the held-out images or on all images exceeds ``max_drop``: rank the quantized activations by
   their own quantization noise (SQNR, lowest first), return the worst group's nodes to float, re-quantize (the
   cache is read, not recomputed) and re-measure; stop inside the budget, or after ``max_steps`` with the best
   model reached, said so in the report;
4. report both drops with paired bootstrap intervals (:mod:`yoloparity.evaluate.bootstrap`); the held-out
   interval's verdict is the command's.

The output is written atomically (a temporary file renamed into place), so a failed or
interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from .. import environment
from ..errors import ModelFileError
from ..io.atomic import copy_file
from ..models.hub import resolve_model_path
from ..process_settings import machine_threads
from .calibration import TensorReader
from .evaluation import QuantReport, Step, accuracy_figures, measure_latency, peak_rss_mb, score_model
from .float_model import quantize_size, static_float_onnx, structural_exclusions
from .formats import CALIB_METHODS, DEFAULT_FORMAT, TFLITE_INPUTS, quantize_format
from .image_set import QuantImages, overlap_notes, read_images
from .onnx_qdq import (
    nodes_for_tensors,
    prepare_float_model,
    quantize_qdq,
    tensor_sensitivity,
)
from .saturation import (
    analyze,
    can_saturate,
    layers_rounding_differently,
    pair_safe_scales,
    quantized_convs,
    worst_pair,
)
from .stream_calibration import calibrate_to_cache

SATURATION_MODES = ("fix", "report")


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize: the format, calibration images and method, what to keep float, the accuracy budget,
    held-out images, how many revert steps and the int16 pair-sum saturation treatment."""
    fmt: str = DEFAULT_FORMAT
    calib_images: int = 128
    calib_method: str | None = None  # None: the format's default (formats.QuantizeFormat.calib_methods)
    exclude: str = "auto"  # auto | none | NAME,NAME,...
    max_drop: float = 0.005
    val_images: int | None = None
    imgsz: int | None = None  # a .pt is exported at this static size; None: the size it was trained at
    threads: int | None = None  # None: machine_threads(), resolved here (every command's one default)
    max_steps: int = 6
    revert_group: int = 4
    sensitivity_images: int = 4
    latency_repeats: int = 20
    saturation: str = "fix"  # fix | report: int16 pair-sum saturation on CPUs without VNNI
    saturation_images: int = 8
    bootstrap: int = 200  # paired bootstrap resamples behind every drop interval
    tflite_input: str = TFLITE_INPUTS[0]  # tflite-int8: the full-integer file's input type (uint8 for runtimes that want it)

    @property
    def method(self) -> str | None:
        """The calibration method this run uses: the one asked for, else the format's default (None for a format
        that calibrates its own way)."""
        methods = quantize_format(self.fmt).calib_methods
        return self.calib_method or (methods[0] if methods else None)

    def __post_init__(self) -> None:
        """Refuse settings that cannot work together, naming them: a QuantizeOptions that exists is valid."""
        object.__setattr__(self, "threads", self.threads or machine_threads())
        fmt = quantize_format(self.fmt)
        if self.calib_method is not None and self.calib_method not in CALIB_METHODS:
            raise ValueError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {self.calib_method!r}")
        if self.calib_method is not None and self.calib_method not in fmt.calib_methods:
            takes = (f"takes {', '.join(fmt.calib_methods)}" if fmt.calib_methods
                     else "calibrates its own way (NNCF by its own statistics)")
            raise ValueError(f"--calib-method {self.calib_method}: --format {self.fmt} {takes}")
        if not 0 <= self.max_drop < 1:
            raise ValueError(f"--max-drop {self.max_drop} is impossible: it is an mAP50-95 difference, from 0 up to below 1")
        if self.saturation not in SATURATION_MODES:
            raise ValueError(f"--saturation must be one of {', '.join(SATURATION_MODES)}, got {self.saturation!r}")
        if self.max_steps < 0 or self.revert_group < 1:
            raise ValueError("--max-steps must be >= 0 and --revert-group >= 1")
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap must be >= 0 (resamples), got {self.bootstrap}")
        if self.tflite_input not in TFLITE_INPUTS:
            raise ValueError(f"--tflite-input must be one of {', '.join(TFLITE_INPUTS)}, got {self.tflite_input!r}")
        if self.tflite_input != TFLITE_INPUTS[0] and fmt.suffix != ".tflite":
            raise ValueError(f"--tflite-input applies to a full-integer TFLite file (--format tflite-int8), not {self.fmt}")


class WeightScales:
    """Pair-safe per-channel scales (:func:`.saturation.pair_safe_scales`) of every Conv weight of the float model,
    passed for the convolutions still quantized (none in ``report`` mode)."""

    def __init__(self, prepared_path: str, enabled: bool):
        import onnx
        from onnx import numpy_helper


        self.by_node: dict[str, str] = {}  # Conv node name -> its weight initializer's name
        self.scales: dict[str, list[float]] = {}
        if not enabled:
            return
        model = onnx.load(prepared_path)
        inits = {i.name: i for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits and len(inits[n.input[1]].dims) == 4:
                self.by_node[n.name] = n.input[1]
                self.scales[n.input[1]] = pair_safe_scales(numpy_helper.to_array(inits[n.input[1]])).tolist()

    def without(self, kept_float: list[str]) -> dict[str, list[float]] | None:
        """The pair-safe weight scales minus the layers kept float (None when none remain)."""
        kept = set(kept_float)
        chosen = {w: self.scales[w] for node, w in self.by_node.items() if node not in kept}
        return chosen or None


def _saturation_report(prepared, candidate: str, structural: list[str], cache: str, images: QuantImages,
                       options: QuantizeOptions, scales: WeightScales, log) -> dict:
    """Emulate the int16 pair sums of CPUs without VNNI on calibration images with the usual (max/127) scales;
    with ``fix``, re-quantize ``candidate`` in place with pair-safe scales and check every layer's bound again."""
    import onnx


    inputs = [image.tensor()[0] for image in images.calibration[: options.saturation_images]]
    layers = analyze(candidate, inputs, options.threads)
    rounding = layers_rounding_differently(layers)
    residual = [layer.node for layer in rounding]
    if scales.scales:
        old = {c.node: c.w_scale for c in quantized_convs(onnx.load(candidate))}
        quantize_qdq(prepared, candidate, options.method, structural, cache, scales.without(structural))
        after = {c.node: c for c in quantized_convs(onnx.load(candidate))}
        for layer in layers:
            conv = after.get(layer.node)
            if conv is not None:
                layer.worst_pair_after = worst_pair(conv.weight)
                layer.scale_growth = float((conv.w_scale / old[layer.node]).mean()) if layer.node in old else None
        residual = [layer.node for layer in layers
                    if layer.worst_pair_after is not None and can_saturate(layer.worst_pair_after)]
    log(f"int16 saturation (CPUs without VNNI), emulated on {len(inputs)} calibration images: {len(rounding)} of "
        f"{len(layers)} quantized convolutions round differently with max/127 scales"
        + (f"; with pair-safe scales {len(residual)} can" if scales.scales else ""))
    return {
        "this_cpu": environment.int8_dot_product(), "images": len(inputs), "mode": options.saturation,
        "layers_total": len(layers), "layers_can_saturate": sum(layer.can_saturate for layer in layers),
        "layers_saturating": len(rounding), "residual_layers": residual,
        "mean_scale_growth": (sum(layer.scale_growth or 1.0 for layer in layers) / len(layers)) if scales.scales and layers else None,
        "layers": [layer.to_dict() for layer in layers],
    }


def run_quantize(model_path: str, data: str, out: str | None, options: QuantizeOptions,
                 log: Callable[[str], None] = print, progress_factory=None) -> QuantReport:
    """Quantize ``model_path`` with images of ``data``, keep the accuracy drop inside the budget by reverting
    the most sensitive layers to float step by step, and report what each step measured. The model path is resolved
    here, once (a file, a model folder's one file, an official name); the format's runner gets the file."""
    return quantize_format(options.fmt).run(resolve_model_path(model_path), data, out, options, log=log,
                                            progress_factory=progress_factory)


def run_onnx_qdq(model_path: str, data: str, out: str | None, options: QuantizeOptions,
                 log: Callable[[str], None] = print, progress_factory=None) -> QuantReport:
    """``--format onnx-qdq``: ONNX Runtime's static QDQ quantization with accuracy control (:class:`_QuantizeRun`)."""
    tmp = tempfile.mkdtemp(prefix="yoloparity-quantize-")
    try:
        return _QuantizeRun(model_path, data, options, tmp, log, progress_factory).execute(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class _QuantizeRun:
    """One ONNX quantization: read the images once, calibrate image by image, measure, then revert the most
    sensitive nodes to float until the held-out drop is inside the budget (or the steps run out), keeping the best
    model seen; the drop of the model kept is reported with intervals on held-out and all images."""

    model_path: str
    data: str
    options: QuantizeOptions
    tmp: str
    log: Callable[[str], None]
    progress_factory: Any

    def _bar(self, total: int, desc: str):
        return self.progress_factory(total, desc) if self.progress_factory else None

    def _score(self, path: str, desc: str):
        bar = self._bar(len(self.images.measured), desc)
        try:
            return score_model(path, self.images, self.options.threads, progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()

    def _prepare(self, out: str | None) -> tuple[str, str]:
        options = self.options
        float_src = static_float_onnx(self.model_path, options.imgsz, self.tmp)
        out = out or os.path.splitext(os.path.basename(self.model_path))[0] + "-int8.onnx"
        if os.path.abspath(out) == os.path.abspath(float_src):
            raise ModelFileError(out, "the output would overwrite the float model; choose another --out")
        self.prepared = prepare_float_model(float_src, self.tmp)
        from ..yolo_model import load_model

        with load_model(self.prepared.path, backend="onnxruntime") as float_model:
            self.spec = float_model.spec
        size, size_note = quantize_size(self.prepared.path, options.imgsz, self.spec.square_size)
        self.options = options = dataclasses.replace(options, imgsz=size)
        self.images = read_images(self.data, self.spec, options, self.log, self.progress_factory)
        self.notes = overlap_notes(self.images) + ([size_note] if size_note else [])
        self.structural = structural_exclusions(self.prepared.path, options.exclude)
        return float_src, out

    def _calibrate(self) -> None:
        options = self.options
        self.cache = os.path.join(self.tmp, "calibration-cache.json")
        bar = self._bar(len(self.images.calibration), "calibrate")
        try:
            calibrate_to_cache(self.prepared.path, self.prepared.input_name, self.images.calibration_batches(),
                               options.method, self.cache, progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()

    def execute(self, out: str | None) -> QuantReport:
        options = self.options
        float_src, out = self._prepare(out)
        self.log(f"float model: measuring mAP on {len(self.images.measured)} images")
        self.float_scores = self._score(self.prepared.path, "float mAP")
        float_map = self.float_scores.map(self.images.held_out_ids())[0]
        self.log(f"float mAP50-95 {float_map:.4f} (held out); calibrating ({options.method}, "
                 f"{len(self.images.calibration)} images, one at a time), {len(self.structural)} nodes kept float")
        self._calibrate()
        candidate = os.path.join(self.tmp, "int8-0.onnx")
        quantize_qdq(self.prepared, candidate, options.method, self.structural, self.cache)
        self.scales = WeightScales(self.prepared.path, options.saturation == "fix")
        saturation = _saturation_report(self.prepared, candidate, self.structural, self.cache, self.images, options,
                                        self.scales, self.log)
        steps, best, step = self._revert_until_within(candidate, float_map)
        int8_scores, best_path, best_kept = best
        figures = accuracy_figures(self.float_scores, int8_scores, self.images, options, self.log)
        self._budget_notes(float_map, int8_scores, best_kept, step, figures)
        latency = measure_latency({"float": self.prepared.path, "int8": best_path}, self.images.held_out[0].tensor(),
                                  options.threads, options.latency_repeats)
        copy_file(best_path, out)
        held = self.images.held_out_ids()
        f_map, f_map50 = self.float_scores.map(held)
        q_map, q_map50 = int8_scores.map(held)
        return QuantReport(
            model=self.model_path, output=out, format=options.fmt, calib_method=options.method,
            calib_images=len(self.images.calibration), val_images=len(held), overlap=self.images.overlap,
            float_map50_95=f_map, float_map50=f_map50, float_detections=self.float_scores.detections(held),
            int8_map50_95=q_map, int8_map50=q_map50, int8_detections=int8_scores.detections(held), drop=f_map - q_map,
            max_drop=options.max_drop, within_budget=figures["verdict"] == "within",
            exclude_mode=options.exclude if options.exclude in ("auto", "none") else "names",
            excluded_structural=self.structural, kept_float=best_kept, steps=steps,
            float_size_bytes=os.path.getsize(float_src), int8_size_bytes=os.path.getsize(out),
            float_latency_ms=latency["float"], int8_latency_ms=latency["int8"],
            speedup=latency["float"] / latency["int8"], threads=options.threads, notes=self.notes,
            calibration_skipped=self.images.skipped, saturation=saturation, accuracy=figures["accuracy"],
            verdict=figures["verdict"], peak_rss_mb=peak_rss_mb(),
        )

    def _measure_step(self, candidate: str, kept: int, group: list[str], desc: str):
        scores = self._score(candidate, desc)
        held = self.images.held_out_ids()
        q_map, q_map50 = scores.map(held)
        return scores, Step(kept, q_map, q_map50, scores.detections(held), reverted=group,
                            drop_all=self.float_all - scores.map(self._all_ids)[0])

    def _ranking(self, candidate: str) -> list[list[str]]:
        """Groups of nodes (each quantized tensor's producer and consumers), the lowest SQNR first."""
        probe = TensorReader(self.prepared.input_name,
                             [image.tensor() for image in self.images.calibration[: self.options.sensitivity_images]])
        sqnr = tensor_sensitivity(candidate, probe)
        return [g for g in nodes_for_tensors(self.prepared.path, sorted(sqnr, key=lambda t: sqnr[t])) if g]

    def _revert_until_within(self, candidate: str, float_map: float) -> tuple[list[Step], tuple, int]:
        """The first int8 model measured, then groups of the most sensitive nodes (lowest SQNR first) returned to
        float one step at a time while the drop on the held-out images or on all images is over budget; the model
        with the smallest of those two drops' larger one is kept."""
        options = self.options
        self._all_ids = [image.entry.id for image in self.images.measured]
        self.float_all = self.float_scores.map(self._all_ids)[0]

        def worst(step: Step) -> float:
            return max(float_map - step.map50_95, step.drop_all)

        scores, first = self._measure_step(candidate, len(self.structural), [], "int8 mAP")
        steps = [first]
        self.log(f"int8 mAP50-95 {first.map50_95:.4f} (drop {float_map - first.map50_95:+.4f} held out, "
                 f"{first.drop_all:+.4f} on all images; {first.detections} detections)")
        best = (scores, candidate, list(self.structural), first)
        kept = list(self.structural)
        ranking: list[list[str]] | None = None
        step = 0
        while worst(best[3]) > options.max_drop and step < options.max_steps:
            step += 1
            ranking = self._ranking(candidate) if ranking is None else ranking
            group: list[str] = []
            while ranking and len(group) < options.revert_group:
                group += [n for n in ranking.pop(0) if n not in kept and n not in group]
            if not group:
                self.notes.append("every quantized tensor was already returned to float; the budget is out of reach")
                break
            kept += group
            candidate = os.path.join(self.tmp, f"int8-{step}.onnx")
            quantize_qdq(self.prepared, candidate, options.method, kept, self.cache, self.scales.without(kept))
            scores, measured = self._measure_step(candidate, len(kept), group, f"step {step}")
            steps.append(measured)
            self.log(f"step {step}: {len(group)} more nodes float ({', '.join(group[:3])}{'…' if len(group) > 3 else ''}): "
                     f"int8 mAP50-95 {measured.map50_95:.4f} (drop {float_map - measured.map50_95:+.4f} held out, "
                     f"{measured.drop_all:+.4f} on all images)")
            if worst(measured) < worst(best[3]):
                best = (scores, candidate, list(kept), measured)
        return steps, best[:3], step

    def _budget_notes(self, float_map: float, int8_scores, best_kept: list[str], step: int, figures: dict) -> None:
        held = self.images.held_out_ids()
        q_map = int8_scores.map(held)[0]
        q_dets = int8_scores.detections(held)
        drop = float_map - q_map
        drop_all = self.float_all - int8_scores.map(self._all_ids)[0]
        if max(drop, drop_all) > self.options.max_drop:
            self.notes.append(f"the budget of {self.options.max_drop} was not met: the best int8 model reached a drop of "
                              f"{drop:.4f} held out and {drop_all:.4f} on all images with {len(best_kept)} nodes kept "
                              "float" + (f" after {step} steps" if step else ""))
        elif figures["verdict"] != "within":
            self.notes.append(f"the held-out drop {drop:+.4f} is inside the budget of {self.options.max_drop}, but "
                              + figures["verdict_text"])
        if q_dets == 0 or q_map < 0.1 * max(float_map, 1e-9):
            self.notes.append(
                "the int8 model has collapsed (" + (f"{q_dets} detections" if q_dets == 0 else f"mAP {q_map:.4f}") + ")"
                + (": with --exclude none the head's decode tail, which joins box pixels and 0-1 scores in one tensor, "
                   "shares one uint8 scale; use --exclude auto" if self.options.exclude == "none" else ""))
