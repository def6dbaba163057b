"""Which head ran, and the reference command that gives the same figure.

A user who runs ``yolo val`` and ``yoloparity val`` on the same file must be able to tell why two figures differ,
or see that they do not. Both depend on settings the reference chooses for them:

* **The head of an end-to-end checkpoint** (YOLOv10, YOLO26 carry a one-to-one head, read with a top-k and no NMS,
  and a one-to-many head trained for NMS). Ultralytics changed its default within 8.4: before PR #26066 its
  validator, predictor and exporter ran the one-to-one head; 8.4.190 runs the one-to-many head + NMS unless asked for
  ``nms=False`` (``AutoBackend(end2end=args.nms is False)``, ``nms`` defaulting to None). yoloparity's default is the
  one-to-one head: it is the head the architecture is built to deploy without NMS, the one every end-to-end export
  runs, and a default that does not move with the reference's release. Both heads are a ``--head`` away.
* **The batch size of the reference's validator**, whose rect batch shapes depend on which images share a batch:
  its batch-1 figure is the one yoloparity reproduces at every batch size and number of processes.

:func:`reference_command` spells the reference command with those settings made explicit; val and predict print it.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..heads import head_format
from ..types import ModelSpec

REFERENCE_VERSION = "8.4.190"  # the Ultralytics release whose figures yoloparity is measured against (bench/)
YOLOV5_REFERENCE = "7.0.14"  # the YOLOv5 release (PyPI yolov5) of the YOLOv5 goldens and bench/val_throughput.py

# the reference's defaults, by (YOLOv5?, command): a setting equal to its default is left off the command line
_DEFAULTS = {
    (True, "val"): {"conf": 0.001, "iou": 0.6, "max_det": 300},
    (True, "predict"): {"conf": 0.25, "iou": 0.45, "max_det": 1000},
    (False, "val"): {"conf": 0.001, "iou": 0.7, "max_det": 300},
    (False, "predict"): {"conf": 0.25, "iou": 0.7, "max_det": 300},
}


def head_summary(spec: ModelSpec) -> str:
    """One line: which head ran, and how it relates to the reference's default."""
    if spec.head_branch == "one2one":
        return (f"one2one (end-to-end top-k, no NMS; yoloparity's default). Ultralytics {REFERENCE_VERSION} runs "
                "one2many + NMS unless given nms=False; --head one2many gives its default figure")
    if spec.head_branch == "one2many":
        return (f"one2many + NMS (Ultralytics {REFERENCE_VERSION}'s default for this checkpoint); --head one2one runs "
                "the top-k head")
    if head_format(spec.head_format).selection == "given":
        return "the file's own top-k (an end-to-end export), read as it is"
    return "the model's only head + NMS"


def reference_command(spec: ModelSpec, command: str, model: str, source: str, settings: dict[str, Any]) -> str | None:
    """The reference implementation's command line that gives the same figure (val) or detections (predict).

    ``settings`` holds what the run used: ``imgsz``, ``mode``, ``conf``, ``iou``, ``max_det`` (and ``classes``,
    ``agnostic`` for predict; ``metric`` for val: the headline figure). None where the reference has no such run: a
    ``--square`` val (its validators always use rect shapes), a ``--square`` predict of a YOLOv5 checkpoint, a model of
    no known family, or one trainer's metric asked of the other family's file (neither tool reads the other's
    checkpoints). For the COCO metric the command saves its predictions, which COCOeval then scores: neither tool
    prints COCO mAP on a dataset that is not COCO itself."""
    square = settings.get("mode", "rect") != "rect"
    if square and (command == "val" or spec.family == "yolov5"):
        return None
    metric = settings.get("metric") if command == "val" else None
    if metric in ("ultralytics", "yolov5") and metric != ("yolov5" if spec.family == "yolov5" else "ultralytics"):
        return None
    coco = " save_json=True" if spec.family != "yolov5" else " --save-json"
    then_coco = ", then its predictions.json scored by COCOeval against the same ground truth" if metric == "coco" else ""
    imgsz = settings.get("imgsz", 640)
    imgsz = imgsz[0] if isinstance(imgsz, (list, tuple)) and len(set(imgsz)) == 1 else imgsz
    defaults = _DEFAULTS[(spec.family == "yolov5", command)]
    changed = {k: settings[k] for k in defaults if settings.get(k) is not None and settings[k] != defaults[k]}
    if head_format(spec.head_format).selection != "nms":
        changed.pop("iou", None)  # no NMS: the IoU threshold plays no part
    quoted_model, quoted_source = shlex.quote(model), shlex.quote(source)
    if spec.family == "yolov5":
        flags = {"conf": "--conf-thres", "iou": "--iou-thres", "max_det": "--max-det"}
        script = "val.py" if command == "val" else "detect.py"
        what = "--data" if command == "val" else "--source"
        parts = [f"python {script} --weights {quoted_model} {what} {quoted_source} --img {imgsz}"]
        if command == "val":
            parts.append("--batch-size 1" + (coco if metric == "coco" else ""))
        parts += [f"{flags[k]} {v}" for k, v in changed.items()]
        return " ".join(parts) + f"  (YOLOv5 {YOLOV5_REFERENCE}{then_coco})"
    if spec.family != "ultralytics" and not spec.head_branch:
        return None
    what = "data" if command == "val" else "source"
    parts = [f"yolo {command} model={quoted_model} {what}={quoted_source} imgsz={imgsz}"]
    if command == "val":
        parts.append("batch=1" + (coco if metric == "coco" else ""))
    parts += [f"{k}={v}" for k, v in changed.items()]
    if command == "predict" and settings.get("classes"):
        parts.append("classes=" + ",".join(str(c) for c in settings["classes"]))
    if command == "predict" and settings.get("agnostic"):
        parts.append("agnostic_nms=True")
    if square:  # the reference's predictor letterboxes a checkpoint's input to the stride rectangle unless told
        parts.append("rect=False")
    if spec.head_branch == "one2one":
        parts.append("nms=False")
    return " ".join(parts) + f"  (Ultralytics {REFERENCE_VERSION}{then_coco})"


def reference_note(spec: ModelSpec, command: str, model: str, source: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``{"head_branch": ..., "command": ...}`` for a run summary (JSON) and its printed form."""
    version = f"yolov5 {YOLOV5_REFERENCE}" if spec.family == "yolov5" else f"ultralytics {REFERENCE_VERSION}"
    return {"head_branch": spec.head_branch or None, "head_summary": head_summary(spec), "reference_version": version,
            "command": reference_command(spec, command, model, source, settings)}
