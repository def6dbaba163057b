"""Raw head output of one image → :class:`Detections` in original-image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Detections, Letterbox
from .decode import Candidates, decode
from .letterbox import boxes_to_original
from .nms import nms
from .topk import topk_candidates


@dataclass(frozen=True)
class Thresholds:
    """NMS settings. ``iou=None`` means the model family's reference default (v5 0.45, v8/11 0.7)."""

    conf: float = 0.25
    iou: float | None = None
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0:
            raise ValueError(f"conf must be in [0, 1], got {self.conf}")
        if self.iou is not None and not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")


def postprocess_stages(raw_image: np.ndarray, head: str, lb: Letterbox, th: Thresholds, iou_default: float,
                       ) -> tuple[Candidates, np.ndarray, Detections]:
    """The candidates after the confidence filter, the indices NMS kept, and the final detections.

    An end-to-end head (``e2e``) has no NMS: its candidates are the top-k selection, all kept."""
    if head == "dets":  # the file already selected: threshold, filter and truncate as the reference's predictor does
        rows = np.asarray(raw_image, dtype=np.float32)
        keep = np.flatnonzero(rows[:, 4] > th.conf)
        if th.classes:
            keep = keep[np.isin(rows[keep, 5].astype(np.int32), np.asarray(th.classes, dtype=np.int32))]
        keep = keep[: th.max_det]
        cands = Candidates(np.ascontiguousarray(rows[keep, :4]), rows[keep, 4].copy(), rows[keep, 5].astype(np.int32))
        if not len(cands):
            return cands, np.arange(0), Detections.empty()
        return cands, np.arange(len(cands)), Detections(boxes_to_original(cands.boxes, lb, rule=head), cands.scores,
                                                        cands.class_ids)
    if head == "e2e":
        cands = topk_candidates(raw_image, th.conf, th.max_det, list(th.classes) if th.classes else None)
        keep = np.arange(len(cands))
        if keep.size == 0:
            return cands, keep, Detections.empty()
        return cands, keep, Detections(boxes_to_original(cands.boxes, lb, rule=head), cands.scores, cands.class_ids)
    cands = decode(raw_image, head, th.conf, multi_label=th.multi_label, classes=list(th.classes) if th.classes else None)
    keep = nms(cands, th.iou if th.iou is not None else iou_default, max_det=th.max_det, agnostic=th.agnostic)
    if keep.size == 0:
        return cands, keep, Detections.empty()
    boxes = boxes_to_original(cands.boxes[keep], lb, rule=head)
    return cands, keep, Detections(boxes, cands.scores[keep].astype(np.float32), cands.class_ids[keep].astype(np.int32))


def postprocess(raw_image: np.ndarray, head: str, lb: Letterbox, th: Thresholds, iou_default: float) -> Detections:
    return postprocess_stages(raw_image, head, lb, th, iou_default)[2]
