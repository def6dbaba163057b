"""What both int8 formats measure and report: mAP on held-out images, interleaved latency, the report types.

Kept apart from the formats' runners (ONNX Runtime QDQ in :mod:`.runner`, TFLite in :mod:`.tflite_export`) so
neither imports the other.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.datasets import Dataset


@dataclass
class Step:
    """One model tried while quantizing: what stayed float, its mAP, and its drop from the float model."""
    kept_float: int
    map50_95: float
    map50: float
    detections: int
    reverted: list[str] = field(default_factory=list)


@dataclass
class QuantReport:
    """What ``quantize`` did and measured: the steps, the chosen model, its mAP against the float model's on
    held-out images, speed and size ratios, and whether it is within the accuracy budget."""
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

    def to_dict(self) -> dict:
        """The report as JSON values."""
        return asdict(self)


def measure_map(model_path: str, dataset: Dataset, imgsz: int, threads: int, progress=None,
                backend: str = "onnxruntime") -> tuple[float, float, int]:
    """mAP50-95, mAP50 and detection count of a model file on ``dataset`` (square at ``imgsz``, batch 1)."""
    from ..evaluate.validator import ValOptions, evaluate_records, predict_images
    from ..model import load_model

    options = ValOptions(imgsz=imgsz, batch=1, mode="square")
    with load_model(model_path, backend=backend, threads=threads) as model:
        records, _ = predict_images(model, dataset.images, options, progress=progress)
    metrics, results = evaluate_records(records, dataset, options.evaluator)
    return float(metrics.mAP50_95), float(metrics.mAP50), len(results)


def measure_latency(paths: dict[str, str], sample: np.ndarray, threads: int, repeats: int,
                    backend: str = "onnxruntime") -> dict[str, float]:
    """Median ms per batch-1 inference of each model on ``backend``, interleaved so machine drift hits all alike."""
    from ..model import load_model

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
