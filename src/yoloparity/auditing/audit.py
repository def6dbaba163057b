"""``audit``: run one model under several configurations on the same images and judge the differences.

The report (a plain dict, the JSON schema) has a top-level ``verdict`` ("pass" or "fail"), the
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
import os
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..backends.registry import is_truth_precision
from ..data.sources import resolve_source
from ..errors import BadImageError, InputNotFoundError, YoloParityError
from ..evaluate.validator import ImageRecord, evaluate_records
from ..heads import head_format
from ..io.detections import to_dict
from ..process_settings import deterministic_settings
from ..types import DEFAULT_CONF, Result, Thresholds
from .capture import ConfigRunner
from .compare import (
    ConfigComparison,
    Tolerances,
    compare_image,
    decide,
    same_detections,
    summarize,
)
from .spec import RunConfig

MAX_LISTED = 200


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


@dataclass
class AuditRun:
    """Stage 1, run: what every configuration produced on the images, compared with the reference image by image
    as they streamed (the comparisons keep only numbers and the differences, not the tensors)."""

    reference: ConfigRunner
    runners: list[ConfigRunner]
    comparisons: list[ConfigComparison]
    truth: int | None  # -1: the reference is the float64 truth; k: configuration k is; None: no fp64 run
    to_truth: dict[int, ConfigComparison]  # configuration index (reference: len(runners)) -> its comparison with fp64
    reference_identical: bool | None
    numerics_inputs: dict[int, tuple[str, np.ndarray, np.ndarray, bool]]  # per config: the image --layers traces
    map_records: list[list]  # per configuration, the reference last: ImageRecords of the images with ground truth
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    gallery: list[GalleryImage] = field(default_factory=list)
    conf: float = DEFAULT_CONF
    nms_iou: float = 0.7


@dataclass
class AuditResult:
    """Stages 2-4, compare → verdict → report: the JSON report (``report``, top-level ``verdict``) and what the HTML
    page shows beside it (the gallery of differing images, the IoU and score-delta samples per configuration)."""

    report: dict
    gallery: list[GalleryImage] = field(default_factory=list)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """"pass" or "fail"."""
        return self.report["verdict"]


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
    result.report["deterministic_settings"] = applied
    return result


def audit_runners(ref_runner: ConfigRunner, runners: list[ConfigRunner], source, repeat: int = 1,
                  tolerances: Tolerances = Tolerances(), chunk: int = 16, progress: Callable[[int], None] | None = None,
                  layers: bool = False, gallery_size: int = 6, dataset=None) -> AuditResult:
    """The audit over configurations already loaded: run → compare → verdict → report."""
    check_same_network(ref_runner, runners)
    run = run_stage(ref_runner, runners, source, repeat, tolerances, chunk, progress, gallery_size, dataset, layers)
    configs, map_info, truth_info = compare_stage(run, tolerances, layers, dataset)
    passed = decide(configs, tolerances, run.reference_identical)
    return report_stage(run, configs, passed, tolerances, map_info, truth_info)


def check_same_network(ref_runner: ConfigRunner, runners: list[ConfigRunner]) -> None:
    """Every configuration runs the reference's network (the same classes and head, or the other head branch of the
    same end-to-end checkpoint); anything else is refused before a comparison means nothing."""
    def placeholder(names) -> bool:  # a metadata-free file's names (class0, class1, ...) say nothing
        return all(n == f"class{i}" for i, n in enumerate(names))

    for r in runners:
        names_differ = r.spec.names != ref_runner.spec.names and not (placeholder(r.spec.names) or placeholder(ref_runner.spec.names))
        other_branch = bool(r.spec.head_branch and ref_runner.spec.head_branch)  # one2one vs one2many: compared
        if names_differ or r.spec.nc != ref_runner.spec.nc or (r.spec.head != ref_runner.spec.head and not other_branch):
            raise YoloParityError(r.config.model or ref_runner.model.path, f"config '{r.config.label}' runs a different "
                                  f"network ({r.spec.nc} classes, head {r.spec.head}) than the reference")


def run_stage(ref_runner: ConfigRunner, runners: list[ConfigRunner], source, repeat: int, tolerances: Tolerances,
              chunk: int, progress, gallery_size: int, dataset, layers: bool = False) -> AuditRun:
    """Stage 1: the images in chunks through every configuration, each compared with the reference as it comes."""
    ids = {os.path.basename(e.path): e.id for e in dataset.images} if dataset is not None else {}
    truth = _truth_index(ref_runner, runners)
    run = AuditRun(
        ref_runner, runners,
        comparisons=[ConfigComparison(r.config.label, run_to_run_identical=True if repeat > 1 else None) for r in runners],
        truth=truth,
        # a float64 configuration is the exact function: every other run (the reference too) is also measured against it
        to_truth={k: ConfigComparison(r.config.label) for k, r in enumerate([*runners, ref_runner])
                  if truth is not None and truth >= 0 and k != truth},
        reference_identical=True if repeat > 1 else None, numerics_inputs={},
        map_records=[[] for _ in range(len(runners) + 1)],
        conf=ref_runner.thresholds.conf, nms_iou=head_format(ref_runner.spec.head).predict_iou)
    items = resolve_source(source)
    for start in range(0, len(items), chunk):
        images = _load_chunk(items[start: start + chunk], run.skipped)
        if images:
            _run_chunk(run, images, repeat, tolerances, ids, gallery_size, layers)
            if progress:
                progress(len(images))
    run.images = len(items) - len(run.skipped)
    return run


def _load_chunk(items, skipped: list[str]) -> list[tuple[str, np.ndarray]]:
    images = []
    for item in items:
        try:
            images.append((item.path, item.load()))
        except (BadImageError, InputNotFoundError) as exc:  # reported and counted, never fatal
            skipped.append(str(exc))
    return images


def _run_chunk(run: AuditRun, images, repeat: int, tolerances: Tolerances, ids: dict[str, int], gallery_size: int,
               layers: bool) -> None:
    ref_runner, runners = run.reference, run.runners
    ref = ref_runner.run(images)
    truth_stages = runners[run.truth].run(images) if run.truth is not None and run.truth >= 0 else None
    if truth_stages is not None:
        _compare_into(run.to_truth[len(runners)], truth_stages, ref, run, tolerances)
    if ids:
        run.map_records[-1] += _records(ref, ids)
    for _ in range(repeat - 1):
        run.reference_identical = run.reference_identical and same_detections(ref, ref_runner.run(images))
    for index, (runner, comp) in enumerate(zip(runners, run.comparisons)):
        stages = truth_stages if index == run.truth else runner.run(images)
        if index in run.to_truth:
            _compare_into(run.to_truth[index], truth_stages, stages, run, tolerances)
        if ids:
            run.map_records[index] += _records(stages, ids)
        for _ in range(repeat - 1):
            comp.run_to_run_identical = comp.run_to_run_identical and same_detections(stages, runner.run(images))
        for a, b in zip(ref, stages):
            image = compare_image(a, b, ref_runner.spec.head, run.conf, run.nms_iou, tolerances.score_noise,
                                  tolerances.box_noise, heads=(ref_runner.spec.head_branch, runner.spec.head_branch))
            comp.images.append(image)
            if layers and _layer_evidence(image, run.numerics_inputs.get(index)):  # the input copies only for --layers
                # an image whose detections differ in model numerics; until one does, one whose raw output differs
                run.numerics_inputs[index] = (a.path, a.tensor[None].copy(), b.tensor[None].copy(),
                                              image.stage == "model numerics")
            if image.differences and sum(g.config == comp.label for g in run.gallery) < gallery_size:
                picture = next(img for path, img in images if path == a.path)
                run.gallery.append(GalleryImage(comp.label, a.path, f"{image.stage}: {image.detail}",
                                                side_by_side(picture, a, b, names_of(ref_runner))))


def compare_stage(run: AuditRun, tolerances: Tolerances, layers: bool, dataset) -> tuple[list[dict], dict | None, dict | None]:
    """Stage 2: each configuration's comparison summarized, with the first divergent layer (``layers``), the
    distances to the float64 truth and the mAP differences (``dataset``) — measurements only, no verdict."""
    names = run.reference.spec.names
    configs = [summarize(comp, runner.config.to_dict(), names, tolerances) for comp, runner in zip(run.comparisons, run.runners)]
    if layers:
        from .layer_diff import first_divergent_layer  # onnx: only when --layers asks

        for index, (path, x_ref, x_cfg, _) in run.numerics_inputs.items():
            found = first_divergent_layer(run.reference.model.backend, run.runners[index].model.backend, x_ref, x_cfg)
            configs[index]["layer_divergence"] = {"image": path, **found}
    truth_info = _truth_report(run, configs)
    map_info = _map_deltas(run.map_records, dataset, configs) if any(run.map_records) else None
    return configs, map_info, truth_info


def report_stage(run: AuditRun, configs: list[dict], passed: bool, tolerances: Tolerances, map_info: dict | None,
                 truth_info: dict | None) -> AuditResult:
    """Stage 4: the JSON report (the schema in the module docstring) and the HTML page's material, typed."""
    ref_runner = run.reference
    report = {
        "verdict": "pass" if passed else "fail",
        "reference": {"label": ref_runner.config.label, **ref_runner.config.to_dict(),
                      "run_to_run_identical": run.reference_identical},
        "tolerances": asdict(tolerances),
        "thresholds": {"conf": run.conf, "iou": run.nms_iou, "max_det": ref_runner.thresholds.max_det},
        "images": run.images,
        "map": map_info,
        "truth": truth_info,
        "notes": sorted({note for r in [ref_runner, *run.runners] for note in r.model.notes})
        + _shape_notes(ref_runner, run.runners),
        "skipped": run.skipped,
        "deterministic_settings": {},
        "configs": configs,
    }
    samples = {comp.label: {"iou": [v for im in comp.images for v in im.ious],
                            "score_delta": [v for im in comp.images for v in im.score_deltas]} for comp in run.comparisons}
    return AuditResult(report, run.gallery, samples)


def _layer_evidence(image, held) -> bool:
    """Whether this compared image should be the one ``--layers`` traces (replacing ``held``)."""
    if held is not None and held[3]:
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


def _truth_index(ref_runner: ConfigRunner, runners: list[ConfigRunner]) -> int | None:
    """-1 when the reference is the float64 truth, the index of the first fp64 configuration, else None."""
    if is_truth_precision(ref_runner.config.precision):
        return -1
    return next((k for k, r in enumerate(runners) if is_truth_precision(r.config.precision)), None)


def _compare_into(comp: ConfigComparison, truth_stages, stages, run: AuditRun, tolerances: Tolerances) -> None:
    for a, b in zip(truth_stages, stages):
        comp.images.append(compare_image(a, b, run.reference.spec.head, run.conf, run.nms_iou, tolerances.score_noise,
                                         tolerances.box_noise))


def _distance(comp_images) -> dict:
    """How far one run is from the float64 truth: raw max |d|, images and detections that differ."""
    raws = [im.raw_max_abs for im in comp_images if im.raw_max_abs is not None]
    diffs = [d for im in comp_images for d in im.differences]
    return {"raw_max_abs": max(raws) if raws else None, "images_differing": sum(bool(im.differences) for im in comp_images),
            "detections_differing": len(diffs), "real": sum(d.kind == "real" for d in diffs),
            "borderline": sum(d.kind == "borderline" for d in diffs)}


def _truth_report(run: AuditRun, report_configs: list[dict]) -> dict | None:
    """Every run's distance to the float64 configuration (``distance_to_fp64`` in each config too)."""
    truth, ref_runner, runners, comparisons, to_truth = run.truth, run.reference, run.runners, run.comparisons, run.to_truth
    if truth is None:
        return None
    if truth == -1:  # the reference is the truth: the ordinary comparisons are the distances
        label, against_truth, runs = ref_runner.config.label, dict(enumerate(comparisons)), []
    else:
        label, against_truth = runners[truth].config.label, to_truth
        runs = [{"label": ref_runner.config.label, "role": "reference", **_distance(to_truth[len(runners)].images)}]
    for k, cfg in enumerate(report_configs):
        cfg["distance_to_fp64"] = _distance(against_truth[k].images) if k in against_truth else None
    runs += [{"label": cfg["label"], "role": "config", **cfg["distance_to_fp64"]} for cfg in report_configs
             if cfg["distance_to_fp64"]]
    return {"label": label, "note": "fp64 runs the unfused network in float64: the exact function, the same on every CPU; "
                                    "each run's distance to it says which of differing runs is closer to the truth",
            "runs": runs}


def _records(stages, ids: dict[str, int]) -> list:
    out = []
    for st in stages:
        key = os.path.basename(st.path)
        if key in ids:
            out.append(ImageRecord(ids[key], st.path, **to_dict(st.detections)))
    return out


def _map_deltas(for_map: list[list], dataset, report_configs: list[dict]) -> dict:
    """mAP50-95 of every configuration on the audited images that have ground truth, and the differences (the
    verdict stage holds them to ``map_delta``)."""
    audited = {r.image_id for r in for_map[-1]}
    if not audited:
        raise YoloParityError(None, "--data: none of the audited images is in the dataset (matched by file name)")
    sub = copy.copy(dataset)
    sub.gt = {**dataset.gt, "images": [i for i in dataset.gt["images"] if i["id"] in audited],
              "annotations": [a for a in dataset.gt["annotations"] if a["image_id"] in audited]}
    ref_map = evaluate_records(for_map[-1], sub, "faster-coco-eval")[0].mAP50_95
    for records, cfg in zip(for_map[:-1], report_configs):
        value = evaluate_records(records, sub, "faster-coco-eval")[0].mAP50_95
        cfg["mAP50_95"] = value
        cfg["mAP_delta"] = value - ref_map
    return {"images": len(audited), "reference_mAP50_95": ref_map, "ground_truth": dataset.gt_source,
            "note": "at the audit's thresholds (conf 0.25, single-label), not validation settings"}
