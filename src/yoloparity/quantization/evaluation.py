"""What both int8 formats measure and report: mAP on held-out images, interleaved latency, the report types.

Kept apart from the formats' runners (ONNX Runtime QDQ in :mod:`.runner`, TFLite in :mod:`.tflite_export`) so
neither imports the other.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..data.datasets import Dataset
from ..heads import head_format
from ..types import JsonReport, ModelSpec, Thresholds


@dataclass
class Step:
    """One model tried while quantizing: what stayed float, its mAP on the held-out images, and its detections."""
    kept_float: int
    map50_95: float
    map50: float
    detections: int
    reverted: list[str] = field(default_factory=list)
    drop_all: float | None = None  # the drop on all measured images (held-out and calibration)


class ModelScores:
    """One model's validation detections on every measured image, scored per image set with an interval at hand.

    Built by :func:`score_model` from the images letterboxed once (:class:`.image_set.QuantImages`); any subset
    (held-out, all) is scored from the same per-image COCO matches (:mod:`yoloparity.evaluate.bootstrap`)."""

    def __init__(self, path: str, backend: str, records: list, dataset: Dataset):
        from ..evaluate.bootstrap import PerImageEvaluation
        from ..evaluate.validator import coco_results

        self.path, self.backend, self.records = path, backend, records
        self.evaluation = PerImageEvaluation(dataset, coco_results(records, dataset.category_ids))
        self._counts = {r.image_id: len(r.scores) for r in records}

    def map(self, image_ids) -> tuple[float, float]:
        """(mAP50-95, mAP50) on ``image_ids``."""
        return self.evaluation.map(list(image_ids))

    def detections(self, image_ids) -> int:
        """Detections (validation thresholds) on ``image_ids``."""
        return sum(self._counts.get(i, 0) for i in image_ids)


def validation_thresholds(spec: ModelSpec) -> Thresholds:
    """The reference validators' selection (conf 0.001, the family's val IoU, multi-label, 300 per image)."""
    from ..evaluate.validator import ValOptions

    return ValOptions(iou=head_format(spec.head_format).reference_iou(validating=True)).thresholds


def score_raw(run: Callable[[np.ndarray], np.ndarray], spec: ModelSpec, images, label: str, backend: str,
              subset=None, progress=None) -> ModelScores:
    """Validation detections of any callable that maps an input (1, 3, H, W) to the raw head output, on the measured
    images of ``images`` (:class:`.image_set.QuantImages`; ``subset``: only those), scored per image.

    Not :func:`yoloparity.evaluate.validator.predict_and_score`, on purpose: quantize scores several models (the float
    one, each int8 step, NNCF's in-memory model) on the same images, so they are read and letterboxed once and every
    model's raw output goes through the same post-processing (:func:`..pipeline.postprocess.postprocess`, the
    predictor's) — ``test_quantize_scores_images_read_once_exactly_as_val_scores_them`` holds the two equal."""
    from ..evaluate.validator import ImageRecord
    from ..pipeline.postprocess import postprocess

    thresholds = validation_thresholds(spec)
    records = []
    for image in (images.measured if subset is None else subset):
        detections = postprocess(run(image.tensor())[0], spec.head_format, image.letterbox, thresholds)
        records.append(ImageRecord.from_detections(image.entry.id, image.entry.path, detections, image.letterbox))
        if progress:
            progress(1)
    dataset = images.dataset if subset is None else images.dataset.subset([image.entry for image in subset])
    return ModelScores(label, backend, records, dataset)


def score_model(model_path: str, images, threads: int, backend: str = "onnxruntime", progress=None) -> ModelScores:
    """Validation detections (square at the images' size, batch 1, the reference validators' thresholds) of a
    model file on every measured image of ``images`` (:class:`.image_set.QuantImages`), read nowhere again."""
    from ..yolo_model import load_model

    with load_model(model_path, backend=backend, threads=threads) as model:
        return score_raw(model.backend.run, model.spec, images, model_path, backend, progress=progress)


@dataclass(frozen=True)
class Accuracy:
    """Float against int8 on one image set: both mAPs, the drop with its paired bootstrap interval, the verdict."""
    images: str  # "held-out" or "all"
    interval: dict  # :class:`yoloparity.evaluate.bootstrap.DropInterval` as JSON values
    verdict: dict  # :class:`yoloparity.evaluate.bootstrap.Verdict` as JSON values
    float_detections: int
    int8_detections: int


def compare_scores(reference: ModelScores, quantized: ModelScores, image_ids, name: str, budget: float,
                   resamples: int) -> Accuracy:
    """The drop of ``quantized`` from ``reference`` on ``image_ids`` with its interval and verdict."""
    from ..evaluate.bootstrap import budget_verdict, paired_bootstrap

    ids = list(image_ids)
    interval = paired_bootstrap(reference.evaluation, quantized.evaluation, ids, resamples=resamples)
    return Accuracy(name, interval.to_dict(), budget_verdict(interval, budget).to_dict(),
                    reference.detections(ids), quantized.detections(ids))


def accuracy_figures(float_scores: "ModelScores", int8_scores: "ModelScores", images, options, log) -> dict:
    """The drop on the held-out images and on all measured images, each with its paired bootstrap interval and
    verdict; the held-out verdict decides (all images, when the dataset was too small to hold any out)."""
    held_out = compare_scores(float_scores, int8_scores, images.held_out_ids(), "held-out", options.max_drop,
                              options.bootstrap)
    figures = [held_out]
    all_ids = [i.entry.id for i in images.measured]
    if sorted(all_ids) != sorted(images.held_out_ids()):  # calibrated on the train split: all of them are held out
        figures.append(compare_scores(float_scores, int8_scores, all_ids, "all", options.max_drop, options.bootstrap))
    for acc in figures:
        iv = acc.interval
        low_high = f" [{iv['low']:+.4f}, {iv['high']:+.4f}]" if iv["low"] is not None else ""
        log(f"drop on {acc.images} images ({iv['images']}): {iv['drop']:+.4f}{low_high} — {acc.verdict['text']}")
    deciding = figures[-1] if images.overlap else held_out
    return {"accuracy": figures, "verdict": deciding.verdict["status"],
            "verdict_text": deciding.verdict["text"]}


@dataclass
class QuantReport(JsonReport):
    """What ``quantize`` did and measured: the steps, the chosen model, its mAP against the float model's on
    held-out images and on all images (each drop with a paired bootstrap interval and a verdict against the
    budget), speed and size ratios, and peak memory."""
    model: str
    output: str
    format: str
    calib_method: str
    calib_images: int
    val_images: int
    overlap: bool
    float_map50_95: float
    float_map50: float
    float_detections: int
    int8_map50_95: float
    int8_map50: float
    int8_detections: int
    drop: float
    max_drop: float
    within_budget: bool
    exclude_mode: str
    excluded_structural: list[str]
    kept_float: list[str]
    steps: list[Step]
    float_size_bytes: int
    int8_size_bytes: int
    float_latency_ms: float
    int8_latency_ms: float
    speedup: float
    threads: int
    notes: list[str]
    calibration_skipped: list[str]
    saturation: dict = field(default_factory=dict)
    float_output: str | None = None  # tflite-int8: the float32 TFLite of the same conversion, kept beside the int8
    accuracy: list[Accuracy] = field(default_factory=list)  # held-out, then all images
    verdict: str = ""  # within | over | unresolved: the held-out interval against the budget
    peak_rss_mb: float | None = None
    converter_peak_rss_mb: float | None = None  # tflite-int8: the converter's own process (onnx2tf, TensorFlow)
    int8_error: dict = field(default_factory=dict)  # tflite-int8: where the error is (tflite_error.int8_error)

    def to_dict(self) -> dict:
        """The report as JSON values."""
        return asdict(self)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where the OS does not say)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        return None


def children_peak_rss_mb() -> float | None:
    """The peak resident memory of the largest child process this process has waited for, in MB (the TFLite
    converter runs as one); None where the OS does not say."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        return None


def measure_latency(paths: dict[str, str], sample: np.ndarray, threads: int, repeats: int,
                    backend: str = "onnxruntime") -> dict[str, float]:
    """Median ms per batch-1 inference of each model on ``backend``, interleaved so machine drift hits all alike."""
    from ..yolo_model import load_model

    with ExitStack() as stack:
        models = {key: stack.enter_context(load_model(path, backend=backend, threads=threads)) for key, path in paths.items()}
        times: dict[str, list[float]] = {key: [] for key in models}
        for i in range(repeats + 3):
            order = list(models) if i % 2 == 0 else list(reversed(list(models)))
            for key in order:
                start = time.perf_counter()
                models[key].raw(sample)
                if i >= 3:  # warm-up excluded
                    times[key].append((time.perf_counter() - start) * 1000)
    return {key: statistics.median(v) for key, v in times.items()}
