"""Raw head output of one image → :class:`Detections` in original-image pixels, by the model's head format."""

from __future__ import annotations

import numpy as np

from ..heads import Candidates, head_format
from ..types import Detections, Letterbox, Thresholds
from .letterbox import boxes_to_original


def postprocess_stages(raw_image: np.ndarray, head: str, lb: Letterbox, th: Thresholds,
                       ) -> tuple[Candidates, np.ndarray, Detections]:
    """The candidates after the confidence filter, the indices the selection kept (NMS, top-k, or the file's own)
    and the final detections. ``th.iou`` None: the head format's reference predict threshold."""
    fmt = head_format(head)
    cands, keep = fmt.select(raw_image, th, th.iou if th.iou is not None else fmt.predict_iou)
    if keep.size == 0:
        return cands, keep, Detections.empty()
    boxes = boxes_to_original(cands.boxes[keep], lb, rule=fmt.box_rule)
    return cands, keep, Detections(boxes, cands.scores[keep].astype(np.float32), cands.class_ids[keep].astype(np.int32))


def postprocess(raw_image: np.ndarray, head: str, lb: Letterbox, th: Thresholds) -> Detections:
    """The detections of one image (see :func:`postprocess_stages`)."""
    return postprocess_stages(raw_image, head, lb, th)[2]
