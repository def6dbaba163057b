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

import os
from contextlib import nullcontext
from dataclasses import asdict
from typing import Callable

import numpy as np

from ..data.sources import resolve_source
from ..errors import BadImageError, InputNotFoundError, YoloParityError
from ..io.detections import to_dict
from ..pipeline.postprocess import Thresholds
from ..process_settings import deterministic_settings
from ..types import Result
from .capture import ConfigRunner
from .compare import (
    ConfigComparison,
    Tolerances,
    compare_image,
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
    return runner.spec.names


def side_by_side(image: np.ndarray, ref, cfg, names: tuple[str, ...], width: int = 520) -> str:
    """Reference detections drawn on the left, the config's on the right, as base64 JPEG."""
    import base64

    import cv2

    from ..io.draw import draw

    left = draw(image, Result(ref.path, ref.detections, ref.letterbox, names))
    right = draw(image, Result(cfg.path, cfg.detections, cfg.letterbox, names))
    both = np.concatenate([left, np.full((image.shape[0], 8, 3), 255, np.uint8), right], axis=1)
    scale = width * 2 / both.shape[1]
    both = cv2.resize(both, (int(both.shape[1] * scale), int(both.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", both, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def run_audit(model: str, source, configs: list[RunConfig], reference: RunConfig, repeat: int = 1,
              deterministic: bool = False, tolerances: Tolerances = Tolerances(), chunk: int = 16,
              progress: Callable[[int], None] | None = None, layers: bool = False, artifacts: dict | None = None,
              gallery_size: int = 6, dataset=None) -> dict:
    """The audit report; with ``artifacts`` (a dict) also the gallery images and samples the HTML page needs;
    with ``dataset`` (see :mod:`yoloparity.data.datasets`) also each configuration's mAP and its difference."""
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    with (deterministic_settings() if deterministic else nullcontext({})) as applied:
        th = Thresholds()
        ref_runner = ConfigRunner(model, reference, th, None, deterministic)
        runners = [ConfigRunner(model, c, th, None, deterministic) for c in configs]
        report = audit_runners(ref_runner, runners, source, repeat, tolerances, chunk, progress, layers, artifacts,
                               gallery_size, dataset)
    report["deterministic_settings"] = applied
    return report


def audit_runners(ref_runner: ConfigRunner, runners: list[ConfigRunner], source, repeat: int = 1,
                  tolerances: Tolerances = Tolerances(), chunk: int = 16, progress: Callable[[int], None] | None = None,
                  layers: bool = False, artifacts: dict | None = None, gallery_size: int = 6, dataset=None) -> dict:
    """The audit over configurations already loaded (see :func:`run_audit`)."""
    ids = {os.path.basename(e.path): e.id for e in dataset.images} if dataset is not None else {}
    for_map: list[list] = [[] for _ in range(len(runners) + 1)]  # per config (reference last): ImageRecords
    def placeholder(names) -> bool:  # a metadata-free file's names (class0, class1, ...) say nothing
        return all(n == f"class{i}" for i, n in enumerate(names))

    for r in runners:
        names_differ = r.spec.names != ref_runner.spec.names and not (placeholder(r.spec.names) or placeholder(ref_runner.spec.names))
        other_branch = bool(r.spec.head_branch and ref_runner.spec.head_branch)  # one2one vs one2many: compared
        if names_differ or r.spec.nc != ref_runner.spec.nc or (r.spec.head != ref_runner.spec.head and not other_branch):
            raise YoloParityError(r.config.model or ref_runner.model.path, f"config '{r.config.label}' runs a different "
                                  f"network ({r.spec.nc} classes, head {r.spec.head}) than the reference")
    conf, nms_iou = ref_runner.thresholds.conf, ref_runner.spec.default_iou
    comparisons = [ConfigComparison(r.config.label, run_to_run_identical=True if repeat > 1 else None) for r in runners]
    # a float64 configuration is the exact function: every other run (the reference too) is also measured against it
    truth = _truth_index(ref_runner, runners)
    to_truth = {k: ConfigComparison(r.config.label) for k, r in enumerate([*runners, ref_runner])
                if truth is not None and truth >= 0 and k != truth}
    ref_identical = True if repeat > 1 else None
    numerics_inputs: dict[int, tuple[str, np.ndarray, np.ndarray, bool]] = {}  # config index -> first image localized to model numerics
    items = resolve_source(source)
    skipped: list[str] = []
    for start in range(0, len(items), chunk):
        images = []
        for item in items[start : start + chunk]:
            try:
                images.append((item.path, item.load()))
            except (BadImageError, InputNotFoundError) as exc:
                skipped.append(str(exc))
        if not images:
            continue
        ref = ref_runner.run(images)
        truth_stages = runners[truth].run(images) if truth is not None and truth >= 0 else None
        if truth_stages is not None:
            _compare_into(to_truth[len(runners)], truth_stages, ref, ref_runner, conf, nms_iou, tolerances)
        if ids:
            for_map[-1] += _records(ref, ids)
        for _ in range(repeat - 1):
            ref_identical = ref_identical and same_detections(ref, ref_runner.run(images))
        for index, (runner, comp) in enumerate(zip(runners, comparisons)):
            stages = truth_stages if index == truth else runner.run(images)
            if index in to_truth:
                _compare_into(to_truth[index], truth_stages, stages, ref_runner, conf, nms_iou, tolerances)
            if ids:
                for_map[index] += _records(stages, ids)
            for _ in range(repeat - 1):
                comp.run_to_run_identical = comp.run_to_run_identical and same_detections(stages, runner.run(images))
            for a, b in zip(ref, stages):
                comp.images.append(compare_image(a, b, ref_runner.spec.head, conf, nms_iou, tolerances.score_noise,
                                                 tolerances.box_noise, heads=(ref_runner.spec.head_branch,
                                                                              runner.spec.head_branch)))
                if layers and _layer_evidence(comp.images[-1], numerics_inputs.get(index)):
                    # an image whose detections differ in model numerics; until one does, one whose raw output differs
                    numerics_inputs[index] = (a.path, a.tensor[None].copy(), b.tensor[None].copy(),
                                              comp.images[-1].stage == "model numerics")
                if artifacts is not None and comp.images[-1].differences:
                    shown = artifacts.setdefault("gallery", [])
                    if sum(g["config"] == comp.label for g in shown) < gallery_size:
                        image = next(img for path, img in images if path == a.path)
                        shown.append({"config": comp.label, "file": a.path,
                                      "detail": f"{comp.images[-1].stage}: {comp.images[-1].detail}",
                                      "jpeg_base64": side_by_side(image, a, b, names_of(ref_runner))})
        if progress:
            progress(len(images))
    names = ref_runner.spec.names
    report_configs = [summarize(comp, runner.config.to_dict(), names, tolerances) for comp, runner in zip(comparisons, runners)]
    if artifacts is not None:
        artifacts["samples"] = {comp.label: {"iou": [v for im in comp.images for v in im.ious],
                                             "score_delta": [v for im in comp.images for v in im.score_deltas]}
                                for comp in comparisons}
    if layers:
        from .layers import first_divergent_layer

        for index, (path, x_ref, x_cfg, _) in numerics_inputs.items():
            found = first_divergent_layer(ref_runner.model.backend, runners[index].model.backend, x_ref, x_cfg)
            report_configs[index]["layer_divergence"] = {"image": path, **found}
    truth_info = _truth_report(truth, ref_runner, runners, report_configs, comparisons, to_truth)
    map_info = None
    if ids:
        map_info = _map_deltas(for_map, dataset, report_configs, tolerances)
    passed = all(c["within_tolerance"] for c in report_configs) and ref_identical is not False
    return {
        "verdict": "pass" if passed else "fail",
        "reference": {"label": ref_runner.config.label, **ref_runner.config.to_dict(), "run_to_run_identical": ref_identical},
        "tolerances": asdict(tolerances),
        "thresholds": {"conf": conf, "iou": nms_iou, "max_det": ref_runner.thresholds.max_det},
        "images": len(items) - len(skipped),
        "map": map_info,
        "truth": truth_info,
        "notes": sorted({note for r in [ref_runner, *runners] for note in r.model.notes}) + _shape_notes(ref_runner, runners),
        "skipped": skipped,
        "deterministic_settings": {},
        "configs": report_configs,
    }


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
    if ref_runner.config.precision == "fp64":
        return -1
    return next((k for k, r in enumerate(runners) if r.config.precision == "fp64"), None)


def _compare_into(comp: ConfigComparison, truth_stages, stages, ref_runner: ConfigRunner, conf: float, nms_iou: float,
                  tolerances: Tolerances) -> None:
    for a, b in zip(truth_stages, stages):
        comp.images.append(compare_image(a, b, ref_runner.spec.head, conf, nms_iou, tolerances.score_noise,
                                         tolerances.box_noise))


def _distance(comp_images) -> dict:
    """How far one run is from the float64 truth: raw max |d|, images and detections that differ."""
    raws = [im.raw_max_abs for im in comp_images if im.raw_max_abs is not None]
    diffs = [d for im in comp_images for d in im.differences]
    return {"raw_max_abs": max(raws) if raws else None, "images_differing": sum(bool(im.differences) for im in comp_images),
            "detections_differing": len(diffs), "real": sum(d.kind == "real" for d in diffs),
            "borderline": sum(d.kind == "borderline" for d in diffs)}


def _truth_report(truth: int | None, ref_runner: ConfigRunner, runners: list[ConfigRunner], report_configs: list[dict],
                  comparisons: list[ConfigComparison], to_truth: dict[int, ConfigComparison]) -> dict | None:
    """Every run's distance to the float64 configuration (``distance_to_fp64`` in each config too)."""
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
    from ..evaluate.validator import ImageRecord

    out = []
    for st in stages:
        key = os.path.basename(st.path)
        if key in ids:
            out.append(ImageRecord(ids[key], st.path, **to_dict(st.detections)))
    return out


def _map_deltas(for_map: list[list], dataset, report_configs: list[dict], tol: Tolerances) -> dict:
    """mAP50-95 of every configuration on the audited images that have ground truth, and the differences."""
    import copy

    from ..evaluate.validator import evaluate_records

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
        if abs(value - ref_map) > tol.map_delta:
            cfg["within_tolerance"] = False
    return {"images": len(audited), "reference_mAP50_95": ref_map, "ground_truth": dataset.gt_source,
            "note": "at the audit's thresholds (conf 0.25, single-label), not validation settings"}
