"""``audit``: run one model under several configurations on the same images and judge the differences.

The report (:class:`AuditReport`; its ``to_dict()`` is the JSON schema) has a top-level ``verdict`` ("pass" or "fail"), the
``reference`` configuration, the ``tolerances`` applied, and per configuration: images compared and
differing, ``real`` and ``borderline`` difference counts, per-class detection counts side by side
with the reference, IoU and score-delta statistics of matched detections, the raw-output max
absolute and relative difference (the absolute one is the tolerance that would have passed), the
stages where images first diverge, run-to-run identity when ``repeat`` > 1, and the differences
themselves (the first 200) with their localization.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import os
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from ..backends.registry import is_truth_precision
from ..data.sources import resolve_source
from ..errors import BadImageError, InputNotFoundError, YoloParityError
from ..evaluate.validator import ImageRecord, evaluate_records
from ..heads import head_format
from ..process_settings import deterministic_settings
from ..types import JsonReport, Result, Thresholds
from .capture import ConfigRunner
from .compare import (
    ConfigComparison,
    ConfigSummary,
    Distance,
    Tolerances,
    Verdict,
    compare_image,
    decide,
    same_detections,
    summarize,
)
from .spec import RunConfig


def default_configs() -> tuple[RunConfig, list[RunConfig]]:
    """Reference torch fp32 batch 1; every available backend x batch {1, 16} x precisions the device has."""
    import torch

    others = [RunConfig(batch=16), RunConfig(backend="onnxruntime", batch=1), RunConfig(backend="onnxruntime", batch=16)]
    if torch.cuda.is_available():
        others += [RunConfig(device="cuda:0", batch=b, precision=p) for b in (1, 16) for p in ("fp32", "fp16")]
    return RunConfig(), others


def names_of(runner: ConfigRunner) -> tuple[str, ...]:
    """The class names the reference configuration draws with."""
    return runner.spec.names


def side_by_side(image: np.ndarray, ref, cfg, names: tuple[str, ...], width: int = 520) -> str:
    """Reference detections drawn on the left, the config's on the right, as base64 JPEG."""
    import cv2

    from ..io.draw import draw

    left = draw(image, Result(ref.path, ref.detections, ref.letterbox, names))
    right = draw(image, Result(cfg.path, cfg.detections, cfg.letterbox, names))
    both = np.concatenate([left, np.full((image.shape[0], 8, 3), 255, np.uint8), right], axis=1)
    scale = width * 2 / both.shape[1]
    both = cv2.resize(both, (int(both.shape[1] * scale), int(both.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", both, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


@dataclass(frozen=True)
class GalleryImage:
    """One image whose detections differ, drawn side by side (reference left) for the HTML page."""

    config: str
    file: str
    detail: str
    jpeg_base64: str


class LayerEvidence(NamedTuple):
    """The image ``--layers`` traces for one configuration: both letterboxed inputs, and whether its detections
    differ in model numerics (else only its raw output differs)."""
    file: str
    reference_input: np.ndarray
    config_input: np.ndarray
    in_numerics: bool


@dataclass(frozen=True)
class AuditRun:
    """Stage 1, run: what every configuration produced on the images, compared with the reference image by image
    as they streamed (the comparisons keep only numbers and the differences, not the tensors)."""

    reference: ConfigRunner
    runners: tuple[ConfigRunner, ...]
    comparisons: tuple[ConfigComparison, ...]  # per configuration: against the reference
    truth: ConfigRunner | None  # the float64 run (the reference or a configuration); None: there is none
    to_truth: tuple[ConfigComparison | None, ...]  # per configuration against a float64 configuration (None: itself,
    reference_to_truth: ConfigComparison | None  # or the reference is the truth, and ``comparisons`` already are)
    reference_identical: bool | None
    evidence: tuple[LayerEvidence | None, ...]  # per configuration: the image --layers traces
    records: tuple[tuple[ImageRecord, ...], ...]  # per configuration: the images with ground truth (--data)
    reference_records: tuple[ImageRecord, ...]
    images: int
    skipped: tuple[str, ...]
    gallery: tuple[GalleryImage, ...]
    conf: float
    nms_iou: float


@dataclass
class _Streaming:
    """Stage 1's state while the chunks stream through; frozen into an :class:`AuditRun` when they are done."""

    comparisons: list[ConfigComparison]
    to_truth: list[ConfigComparison | None]
    reference_to_truth: ConfigComparison | None
    reference_identical: bool | None
    evidence: list[LayerEvidence | None]
    records: list[list[ImageRecord]]
    reference_records: list[ImageRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    gallery: list[GalleryImage] = field(default_factory=list)


@dataclass(frozen=True)
class MapSummary:
    """``--data``: the reference's mAP50-95 on the audited images with ground truth (each configuration's own and its
    difference are in its :class:`ConfigSummary`)."""
    images: int
    reference_mAP50_95: float
    ground_truth: str
    note: str = "at the audit's thresholds (conf 0.25, single-label), not validation settings"


@dataclass(frozen=True)
class TruthDistance:
    """One run's distance to the float64 truth, as the report lists it."""
    label: str
    role: str  # "reference" or "config"
    distance: Distance


@dataclass(frozen=True)
class TruthSummary:
    """With a float64 run in the audit: which run is the truth and every other run's distance to it."""
    label: str
    runs: tuple[TruthDistance, ...]
    note: str = ("fp64 runs the unfused network in float64: the exact function, the same on every CPU; each run's "
                 "distance to it says which of differing runs is closer to the truth")

    def to_dict(self) -> dict:
        """The JSON form: ``runs`` flattened (label, role and the distance's figures)."""
        return {"label": self.label, "note": self.note,
                "runs": [{"label": r.label, "role": r.role, **asdict(r.distance)} for r in self.runs]}


@dataclass(frozen=True)
class AuditReport(JsonReport):
    """The audit's report: the verdict, the reference configuration, the tolerances and thresholds applied, every
    configuration's :class:`ConfigSummary`, and the mAP and float64-truth figures where measured. ``to_dict()`` is
    the schema of the module docstring (``--json``)."""
    verdict: Verdict
    reference: dict
    tolerances: Tolerances
    thresholds: dict
    images: int
    map: MapSummary | None
    truth: TruthSummary | None
    notes: tuple[str, ...]
    skipped: tuple[str, ...]
    configs: tuple[ConfigSummary, ...]
    deterministic_settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The report as JSON values; each configuration with ``within_tolerance`` and ``outside_tolerance``."""
        return {"verdict": self.verdict.status, "reference": self.reference, "tolerances": asdict(self.tolerances),
                "thresholds": self.thresholds, "images": self.images,
                "map": asdict(self.map) if self.map else None, "truth": self.truth.to_dict() if self.truth else None,
                "notes": list(self.notes), "skipped": list(self.skipped),
                "deterministic_settings": self.deterministic_settings,
                "configs": [c.to_dict(why) for c, why in zip(self.configs, self.verdict.reasons)]}


@dataclass(frozen=True)
class AuditResult:
    """The audit's typed report and what the HTML page shows beside it (the gallery of differing images, the IoU and
    score-delta samples per configuration)."""

    report: AuditReport
    gallery: tuple[GalleryImage, ...] = ()
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """"pass" or "fail"."""
        return self.report.verdict.status


def run_audit(model: str, source, configs: list[RunConfig], reference: RunConfig, repeat: int = 1,
              deterministic: bool = False, tolerances: Tolerances = Tolerances(), chunk: int = 16,
              progress: Callable[[int], None] | None = None, layers: bool = False, gallery_size: int = 6,
              dataset=None) -> AuditResult:
    """Load the configurations (under torch's determinism switches with ``deterministic``) and audit them; with
    ``dataset`` (see :mod:`yoloparity.data.datasets`) also each configuration's mAP and its difference."""
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    with (deterministic_settings() if deterministic else nullcontext({})) as applied:
        th = Thresholds()
        with ExitStack() as stack:
            ref_runner = stack.enter_context(ConfigRunner(model, reference, th, None, deterministic))
            runners = [stack.enter_context(ConfigRunner(model, c, th, None, deterministic)) for c in configs]
            result = audit_runners(ref_runner, runners, source, repeat, tolerances, chunk, progress, layers,
                                   gallery_size, dataset)
    return dataclasses.replace(result, report=dataclasses.replace(result.report, deterministic_settings=applied))


def audit_runners(ref_runner: ConfigRunner, runners: list[ConfigRunner], source, repeat: int = 1,
                  tolerances: Tolerances = Tolerances(), chunk: int = 16, progress: Callable[[int], None] | None = None,
                  layers: bool = False, gallery_size: int = 6, dataset=None) -> AuditResult:
    """The audit over configurations already loaded: run → compare → verdict → report."""
    check_same_network(ref_runner, runners)
    run = run_stage(ref_runner, runners, source, repeat, tolerances, chunk, progress, gallery_size, dataset, layers)
    configs, map_info, truth_info = compare_stage(run, layers, dataset)
    verdict = decide(configs, tolerances, run.reference_identical)
    return report_stage(run, configs, verdict, tolerances, map_info, truth_info)


def check_same_network(ref_runner: ConfigRunner, runners: list[ConfigRunner]) -> None:
    """Every configuration runs the reference's network (the same classes and head, or the other head branch of the
    same end-to-end checkpoint); anything else is refused before a comparison means nothing."""
    def placeholder(names) -> bool:  # a metadata-free file's names (class0, class1, ...) say nothing
        return all(n == f"class{i}" for i, n in enumerate(names))

    for r in runners:
        names_differ = r.spec.names != ref_runner.spec.names and not (placeholder(r.spec.names) or placeholder(ref_runner.spec.names))
        other_branch = bool(r.spec.head_branch and ref_runner.spec.head_branch)  # one2one vs one2many: compared
        if names_differ or r.spec.nc != ref_runner.spec.nc or (r.spec.head_format != ref_runner.spec.head_format and not other_branch):
            raise YoloParityError(r.config.model or ref_runner.model.path, f"config '{r.config.label}' runs a different "
                                  f"network ({r.spec.nc} classes, head {r.spec.head_format}) than the reference")


def run_stage(ref_runner: ConfigRunner, runners: list[ConfigRunner], source, repeat: int, tolerances: Tolerances,
              chunk: int, progress, gallery_size: int, dataset, layers: bool = False) -> AuditRun:
    """Stage 1: the images in chunks through every configuration, each compared with the reference as it comes."""
    ids = {os.path.basename(e.path): e.id for e in dataset.images} if dataset is not None else {}
    truth = _truth_runner(ref_runner, runners)
    against_truth = truth is not None and truth is not ref_runner  # a float64 configuration: all are measured to it
    state = _Streaming(
        comparisons=[ConfigComparison(r.config.label, run_to_run_identical=True if repeat > 1 else None) for r in runners],
        to_truth=[ConfigComparison(r.config.label) if against_truth and r is not truth else None for r in runners],
        reference_to_truth=ConfigComparison(ref_runner.config.label) if against_truth else None,
        reference_identical=True if repeat > 1 else None, evidence=[None] * len(runners),
        records=[[] for _ in runners])
    conf, nms_iou = ref_runner.thresholds.conf, head_format(ref_runner.spec.head_format).predict_iou
    how = _ChunkSettings(repeat, tolerances, ids, gallery_size, layers, conf, nms_iou)
    items = resolve_source(source)
    for start in range(0, len(items), chunk):
        images = _load_chunk(items[start: start + chunk], state.skipped)
        if images:
            _run_chunk(ref_runner, runners, truth, state, images, how)
            if progress:
                progress(len(images))
    return AuditRun(ref_runner, tuple(runners), tuple(state.comparisons), truth, tuple(state.to_truth),
                    state.reference_to_truth, state.reference_identical, tuple(state.evidence),
                    tuple(tuple(r) for r in state.records), tuple(state.reference_records),
                    len(items) - len(state.skipped), tuple(state.skipped), tuple(state.gallery), conf, nms_iou)


def _load_chunk(items, skipped: list[str]) -> list[tuple[str, np.ndarray]]:
    images = []
    for item in items:
        try:
            images.append((item.path, item.load()))
        except (BadImageError, InputNotFoundError) as exc:  # reported and counted, never fatal
            skipped.append(str(exc))
    return images


class _ChunkSettings(NamedTuple):
    repeat: int
    tolerances: Tolerances
    ids: dict[str, int]  # dataset image ids by file name (--data), else empty
    gallery_size: int
    layers: bool
    conf: float
    nms_iou: float


def _run_chunk(ref_runner: ConfigRunner, runners: list[ConfigRunner], truth: ConfigRunner | None, state: _Streaming,
               images, how: _ChunkSettings) -> None:
    ref = ref_runner.run(images)
    truth_stages = truth.run(images) if truth is not None and truth is not ref_runner else None
    if state.reference_to_truth is not None:
        _compare_into(state.reference_to_truth, truth_stages, ref, ref_runner.spec.head_format, how)
    state.reference_records += dataset_records(ref, how.ids)
    for _ in range(how.repeat - 1):
        state.reference_identical = state.reference_identical and same_detections(ref, ref_runner.run(images))
    for index, (runner, comp) in enumerate(zip(runners, state.comparisons)):
        stages = truth_stages if runner is truth else runner.run(images)
        if state.to_truth[index] is not None:
            _compare_into(state.to_truth[index], truth_stages, stages, ref_runner.spec.head_format, how)
        state.records[index] += dataset_records(stages, how.ids)
        for _ in range(how.repeat - 1):
            comp.run_to_run_identical = comp.run_to_run_identical and same_detections(stages, runner.run(images))
        for a, b in zip(ref, stages):
            image = compare_image(a, b, ref_runner.spec.head_format, how.conf, how.nms_iou, how.tolerances.score_noise,
                                  how.tolerances.box_noise, branches=(ref_runner.spec.head_branch, runner.spec.head_branch))
            comp.images.append(image)
            if how.layers and _layer_evidence(image, state.evidence[index]):  # the input copies only for --layers
                # an image whose detections differ in model numerics; until one does, one whose raw output differs
                state.evidence[index] = LayerEvidence(a.path, a.tensor[None].copy(), b.tensor[None].copy(),
                                                      image.stage == "model numerics")
            if image.differences and sum(g.config == comp.label for g in state.gallery) < how.gallery_size:
                picture = next(img for path, img in images if path == a.path)
                state.gallery.append(GalleryImage(comp.label, a.path, f"{image.stage}: {image.detail}",
                                                  side_by_side(picture, a, b, names_of(ref_runner))))


def compare_stage(run: AuditRun, layers: bool, dataset) -> tuple[tuple[ConfigSummary, ...], MapSummary | None,
                                                                 TruthSummary | None]:
    """Stage 2: each configuration's comparison summarized, with the first divergent layer (``layers``), the
    distances to the float64 truth and the mAP differences (``dataset``) — measurements only, no verdict."""
    names = run.reference.spec.names
    configs = [summarize(comp, {**runner.config.to_dict(), "computes": runner.model.backend.compute_precision().to_dict()},
                         names) for comp, runner in zip(run.comparisons, run.runners)]
    if layers:
        from .layer_diff import first_divergent_layer  # onnx: only when --layers asks

        for index, evidence in enumerate(run.evidence):
            if evidence is not None:
                found = first_divergent_layer(run.reference.model.backend, run.runners[index].model.backend,
                                              evidence.reference_input, evidence.config_input)
                configs[index] = configs[index].replace(layer_divergence={"image": evidence.file, **found})
    truth_info = None
    if run.truth is not None:
        distances = _truth_distances(run)
        configs = [c.replace(distance_to_fp64=d) for c, d in zip(configs, distances)]
        truth_info = _truth_summary(run, configs)
    map_info = None
    if run.reference_records:
        map_info, maps = _map_deltas(run, dataset)
        configs = [c.replace(mAP50_95=m, mAP_delta=m - map_info.reference_mAP50_95) for c, m in zip(configs, maps)]
    elif dataset is not None:
        raise YoloParityError(None, "--data: none of the audited images is in the dataset (matched by file name)")
    return tuple(configs), map_info, truth_info


def report_stage(run: AuditRun, configs: tuple[ConfigSummary, ...], verdict: Verdict, tolerances: Tolerances,
                 map_info: MapSummary | None, truth_info: TruthSummary | None) -> AuditResult:
    """Stage 4: the typed report (its JSON, the schema in the module docstring) and the HTML page's material."""
    ref_runner = run.reference
    report = AuditReport(
        verdict=verdict,
        reference={"label": ref_runner.config.label, **ref_runner.config.to_dict(),
                   "run_to_run_identical": run.reference_identical},
        tolerances=tolerances,
        thresholds={"conf": run.conf, "iou": run.nms_iou, "max_det": ref_runner.thresholds.max_det},
        images=run.images, map=map_info, truth=truth_info,
        notes=tuple(sorted({note for r in [ref_runner, *run.runners] for note in r.model.notes})
                    + _shape_notes(ref_runner, run.runners)),
        skipped=run.skipped, configs=configs)
    samples = {comp.label: {"iou": [v for im in comp.images for v in im.ious],
                            "score_delta": [v for im in comp.images for v in im.score_deltas]} for comp in run.comparisons}
    return AuditResult(report, run.gallery, samples)


def _layer_evidence(image, held: LayerEvidence | None) -> bool:
    """Whether this compared image should be the one ``--layers`` traces (replacing ``held``)."""
    if held is not None and held.in_numerics:
        return False
    if image.stage == "model numerics":
        return True
    return held is None and bool(image.raw_max_abs)


def _shape_notes(ref_runner: ConfigRunner, runners: list[ConfigRunner]) -> list[str]:
    """A static-input file against a rect reference differs in preprocessing on every image, which hides its numerics."""
    notes = []
    for r in runners:
        if r.shape_note and ref_runner.config.mode == "rect":
            size = r.config.imgsz
            notes.append(f"{r.config.label}: {r.shape_note}; the reference runs rect, so every image already differs in "
                         f"preprocessing and that hides the numerics: give the reference the same input, e.g. "
                         f"--reference mode=square,imgsz={size}")
    return notes


def _truth_runner(ref_runner: ConfigRunner, runners: list[ConfigRunner]) -> ConfigRunner | None:
    """The float64 run every other is measured against: the reference when it runs fp64, else the first fp64
    configuration, else None."""
    if is_truth_precision(ref_runner.config.precision):
        return ref_runner
    return next((r for r in runners if is_truth_precision(r.config.precision)), None)


def _compare_into(comp: ConfigComparison, truth_stages, stages, head: str, how: _ChunkSettings) -> None:
    for a, b in zip(truth_stages, stages):
        comp.images.append(compare_image(a, b, head, how.conf, how.nms_iou, how.tolerances.score_noise,
                                         how.tolerances.box_noise))


def _truth_distances(run: AuditRun) -> list[Distance | None]:
    """Each configuration's distance to the float64 truth (None for the truth itself)."""
    if run.truth is run.reference:  # the reference is the truth: the ordinary comparisons are the distances
        return [Distance.of(comp) for comp in run.comparisons]
    return [Distance.of(comp) if comp is not None else None for comp in run.to_truth]


def _truth_summary(run: AuditRun, configs: list[ConfigSummary]) -> TruthSummary:
    """Every run's distance to the float64 run, the reference's first when it is not the truth itself."""
    runs = []
    if run.reference_to_truth is not None:
        runs.append(TruthDistance(run.reference.config.label, "reference", Distance.of(run.reference_to_truth)))
    runs += [TruthDistance(c.label, "config", c.distance_to_fp64) for c in configs if c.distance_to_fp64]
    return TruthSummary(run.truth.config.label, tuple(runs))


def dataset_records(stages, ids: dict[str, int]) -> list[ImageRecord]:
    """The records of the audited images that are in the dataset (matched by file name), for their mAP."""
    return [ImageRecord.from_detections(ids[os.path.basename(st.path)], st.path, st.detections)
            for st in stages if os.path.basename(st.path) in ids]


def _map_deltas(run: AuditRun, dataset) -> tuple[MapSummary, list[float]]:
    """mAP50-95 of the reference and of every configuration on the audited images that have ground truth (the
    verdict holds their differences to ``map_delta``)."""
    audited = {r.image_id for r in run.reference_records}
    sub = copy.copy(dataset)
    sub.gt = {**dataset.gt, "images": [i for i in dataset.gt["images"] if i["id"] in audited],
              "annotations": [a for a in dataset.gt["annotations"] if a["image_id"] in audited]}
    ref_map = evaluate_records(list(run.reference_records), sub, "faster-coco-eval")[0].mAP50_95
    maps = [evaluate_records(list(records), sub, "faster-coco-eval")[0].mAP50_95 for records in run.records]
    return MapSummary(len(audited), ref_map, dataset.gt_source), maps
