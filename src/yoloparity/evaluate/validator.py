"""Validation: predict a dataset with the reference validators' settings, evaluate with COCOeval.

The same functions serve one process and a sharded run (:mod:`.distributed`): a shard is a
contiguous slice of the image list sorted by name; its predictions become compact per-image
records (:class:`ImageRecord`) that are written atomically as one shard file, gathered and
turned into COCO results once, on one process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..data.datasets import Dataset
from ..data.sources import SourceItem
from ..environment import fingerprint as environment_fingerprint
from ..heads import head_format
from ..io.detections import from_dict, to_coco, to_dict
from ..pipeline.predictor import merge_times
from ..settings import InferenceSettings
from ..types import DEFAULT_VAL_CONF, Detections, JsonReport, Letterbox, ModelSpec, Result
from ..yolo_model import YoloModel
from .coco import EVALUATORS, Metrics, coco_evaluate
from .trainer_metrics import TRAINER_METRICS, TrainerMetrics, trainer_metrics

METRICS = ("coco",) + TRAINER_METRICS  # val --metric: which figure heads the report


@dataclass(frozen=True)
class ValOptions(InferenceSettings):
    """The validation settings: :class:`~yoloparity.settings.InferenceSettings` with the reference validators'
    defaults (multi-label selection at conf 0.001, their letterbox and the family's IoU, rect shapes, batch 32),
    which COCO evaluator computes the metrics and which figure heads the report."""
    batch: int = 32
    conf: float = DEFAULT_VAL_CONF
    multi_label: bool = True
    preprocess: str = "val"
    evaluator: str = "faster-coco-eval"
    metric: str | None = None  # the headline figure (METRICS); None: decided by the data and the model (headline_metric)

    def __post_init__(self) -> None:
        """Refuse what cannot run, naming it: a ValOptions that exists is valid from the CLI to the workers."""
        super().__post_init__()
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {self.evaluator!r}")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


def headline_metric(dataset: Dataset, spec: ModelSpec, asked: str | None = None) -> str:
    """The figure a validation leads with: what was asked, else the COCO metric when the ground truth is a COCO json
    (the figure COCO users quote), else the metric the model's own trainer prints after training (YOLOv5's val.py
    for YOLOv5 files, Ultralytics' for the others): on the user's own dataset that is the number they compare with."""
    if asked:
        return asked
    if dataset.gt_source.startswith("COCO json"):
        return "coco"
    return "yolov5" if spec.family == "yolov5" else "ultralytics"


def val_iou(head: str) -> float:
    """The reference validator's NMS IoU for a head format (YOLOv5's val.py 0.6, Ultralytics 0.7; recorded, and
    unused by formats without NMS)."""
    return head_format(head).val_iou


@dataclass
class ImageRecord:
    """One image's predictions in original-image pixels, JSON-portable (float32 values round-trip exactly)."""

    image_id: int
    file: str
    boxes: list[list[float]]
    scores: list[float]
    class_ids: list[int]
    letterbox: dict | None = None
    # the boxes in network-input pixels as the head gave them (unclipped): Ultralytics' own metric compares there
    input_boxes: list[list[float]] | None = None

    @classmethod
    def from_detections(cls, image_id: int, file: str, detections: Detections, letterbox: Letterbox | None = None,
                        input_boxes: np.ndarray | None = None) -> "ImageRecord":
        """The record of one image's detections under its dataset id: every scorer builds its records here."""
        return cls(image_id, file, **to_dict(detections), letterbox=letterbox.to_dict() if letterbox else None,
                   input_boxes=input_boxes.tolist() if input_boxes is not None else None)

    @classmethod
    def from_result(cls, image_id: int, result: Result) -> "ImageRecord":
        """The record of one predicted image under its dataset id."""
        return cls.from_detections(image_id, result.path, result.detections, result.letterbox, result.input_boxes)

    @property
    def detections(self) -> Detections:
        """The record's detections as :class:`Detections`."""
        return from_dict(asdict(self))


@dataclass(frozen=True)
class SkippedImage:
    """A dataset image with no prediction: unreadable (``stage`` "input") or its inference failed ("inference")."""
    file: str
    error: str
    stage: str


def predict_records(predictor, entries: list, progress: Callable[[int], None] | None = None,
                    ) -> Iterator[ImageRecord | SkippedImage]:
    """The one loop that predicts dataset images (``ImageEntry`` list) for scoring: each image's record under its
    dataset id, or why it has none, in order. val's shards, bench's mAP and :func:`predict_and_score` run it."""
    for entry, result in zip(entries, predictor.run([SourceItem(e.path) for e in entries], progress=progress)):
        if result.ok:
            yield ImageRecord.from_result(entry.id, result)
        else:
            yield SkippedImage(entry.path, result.error, "inference" if result.failed else "input")


@dataclass(frozen=True)
class DatasetScore:
    """A model's predictions on a dataset and their COCO figures (:func:`predict_and_score`)."""
    metrics: Metrics
    results: list[dict]  # the COCO result rows scored
    records: list[ImageRecord]
    skipped: list[SkippedImage]
    times: dict


def predict_and_score(model: YoloModel, dataset: Dataset, options: ValOptions,
                      progress: Callable[[int], None] | None = None) -> DatasetScore:
    """Predict every image of ``dataset`` with ``options`` (resolved against the model by its predictor, as val's
    are) and score them with ``options.evaluator``, in this process."""
    predictor = model.predictor(options)
    records, skipped = [], []
    for row in predict_records(predictor, dataset.images, progress):
        (records if isinstance(row, ImageRecord) else skipped).append(row)
    metrics, results = evaluate_records(records, dataset, options.evaluator)
    return DatasetScore(metrics, results, records, skipped, predictor.times.to_dict())


def coco_results(records: list[ImageRecord], category_ids: tuple[int, ...]) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``) sorted by image id, then score.

    Rounded as the reference validators write them (boxes to 3 decimals, scores to 5), so figures
    computed from the saved file equal the ones reported.
    """
    return [row for rec in sorted(records, key=lambda r: r.image_id) for row in to_coco(rec.detections, rec.image_id,
                                                                                        category_ids)]


def check_complete(records: list[ImageRecord], dataset: Dataset, skipped: list[str]) -> None:
    """Every dataset image exactly once (or reported as skipped): never a silent partial mAP."""
    from collections import Counter

    counts = Counter(r.image_id for r in records)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    if duplicated:
        raise RuntimeError(f"gathered predictions hold image ids more than once, e.g. {duplicated[:5]}")
    expected = {e.id for e in dataset.images}
    unknown = sorted(set(counts) - expected)
    if unknown:
        raise RuntimeError(f"gathered predictions hold image ids not in the dataset, e.g. {unknown[:5]}")
    missing = expected - set(counts)
    if len(missing) != len(skipped):
        raise RuntimeError(f"{len(missing)} dataset images have no predictions but {len(skipped)} were reported skipped")


class COCOEvaluator:
    """Collects one dataset's predictions and scores them with a real COCO evaluator (detectron2's evaluator
    model): ``reset()``, ``process(record)`` per image (an :class:`ImageRecord`, or an image id and
    :class:`Detections`), ``evaluate() -> (Metrics, COCO results)``. val (every rank's shard gathered), audit
    ``--data``, quantize and bench all score through it."""

    def __init__(self, dataset: Dataset, evaluator: str = "faster-coco-eval"):
        if evaluator not in EVALUATORS:
            raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {evaluator!r}")
        self.dataset, self.evaluator = dataset, evaluator
        self.reset()

    def reset(self) -> None:
        """Forget the processed detections."""
        self.records: list[ImageRecord] = []

    def process(self, record: "ImageRecord | int", detections: Detections | None = None) -> None:
        """Add one image's detections (a record, or an image id and its detections)."""
        if not isinstance(record, ImageRecord):
            record = ImageRecord(int(record), "", **to_dict(detections))
        self.records.append(record)

    def evaluate(self) -> tuple[Metrics, list[dict]]:
        """(metrics, COCO result rows) of everything processed."""
        results = coco_results(self.records, self.dataset.category_ids)
        ds = self.dataset
        return coco_evaluate(ds.gt, results, ds.names, ds.category_ids, self.evaluator), results


def evaluate_records(records: list[ImageRecord], dataset: Dataset, evaluator: str) -> tuple[Metrics, list[dict]]:
    """Score ``records`` at once (a :class:`COCOEvaluator` fed with all of them)."""
    scorer = COCOEvaluator(dataset, evaluator)
    for record in records:
        scorer.process(record)
    return scorer.evaluate()


@dataclass
class ValReport(JsonReport):
    """A validation's result: metrics, settings, timings, skipped images, notes and the reference command."""
    metrics: Metrics
    settings: dict[str, Any]
    notes: list[str]
    dataset: dict[str, Any]
    times: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list, repr=False)
    records: list[ImageRecord] = field(default_factory=list, repr=False)
    run_dir: str | None = None  # where the shard files are kept (None: a temporary folder, removed)
    spec: ModelSpec | None = field(default=None, repr=False)  # the validated model's (for run records)
    # which head ran and the reference command giving the same figure (models.reference_commands.reference_note)
    reference: dict[str, Any] = field(default_factory=dict)
    # the trainers' own figures (Ultralytics', YOLOv5's) beside the COCO ones, and which of the three heads the report
    trainer: dict[str, TrainerMetrics] = field(default_factory=dict)
    metric: str = "coco"

    @property
    def headline(self) -> dict[str, float]:
        """The headline figures (mAP50-95, mAP50, precision, recall) of :attr:`metric`."""
        source = self.metrics if self.metric == "coco" else self.trainer[self.metric]
        return {k: getattr(source, k) for k in ("mAP50_95", "mAP50", "precision", "recall")}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (without the per-image records): the COCO metrics at the top level (as before),
        ``metric`` and ``headline`` (the figure the summary leads with) and every trainer metric."""
        m = self.metrics.to_dict()
        return {**m, "metric": self.metric, "headline": self.headline,
                "trainer_metrics": {k: v.to_dict() for k, v in self.trainer.items()},
                "settings": self.settings, "notes": self.notes, "dataset": self.dataset, "times": self.times,
                "skipped": self.skipped, "reference": self.reference, "environment": environment_fingerprint()}


def build_report(records, skipped, times_parts, dataset: Dataset, options: ValOptions, notes, model: YoloModel,
                 world: int, wall: float) -> ValReport:
    """Evaluate the gathered records of every rank once and assemble the report."""
    check_complete(records, dataset, skipped)
    metrics, results = evaluate_records(records, dataset, options.evaluator)
    trainer = {name: trainer_metrics(records, dataset, name) for name in TRAINER_METRICS}
    headline = headline_metric(dataset, model.spec, options.metric)
    settings = {**options.to_dict(), "imgsz": options.square_size, "metric": headline, "backend": model.backend.name, "device": model.backend.device,
                "precision": model.backend.precision, "computes": model.backend.compute_precision().to_dict(),
                "head_branch": model.spec.head_branch or None, "model": model.path,
                "processes": world}
    times = merge_times(times_parts)
    times.update(wall_s=round(wall, 3), images_per_s=round(len(records) / wall, 3) if wall else None,
                 eval_s=round(metrics.eval_seconds, 3))
    info = {"images": len(dataset.images), "ground_truth": dataset.gt_source, "label_issues": len(dataset.issues),
            "label_issue_counts": dataset.issue_counts(), "skipped_images": len(skipped)}
    return ValReport(metrics, settings, notes, info, times, skipped, results, sorted(records, key=lambda r: r.file),
                     spec=model.spec, trainer=trainer, metric=headline)

