"""Deterministic greedy non-maximum suppression in NumPy, the same on every backend.

Order is stable: score descending, then candidate index ascending, so ties resolve the same way
everywhere (the references' ``argsort(descending=True)`` does not promise that). Classes are
kept apart the way the references do it — each class's boxes are shifted by ``class * 7680``
pixels — and IoU is computed in float32 as torchvision's CPU kernel does, so borderline
suppressions match the reference; a box is dropped when its IoU with a kept box is > ``iou``.
"""

from __future__ import annotations

import numpy as np

from .decode import Candidates

MAX_WH = 7680  # the references' class offset: larger than any image side
MAX_NMS = 30000  # the references' cap on boxes entering NMS


def stable_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting scores descending; equal scores keep their input order."""
    return np.argsort(-scores, kind="stable")


def nms(
    cands: Candidates,
    iou: float,
    max_det: int = 300,
    agnostic: bool = False,
    max_nms: int = MAX_NMS,
) -> np.ndarray:
    """Indices into ``cands`` of the kept boxes, best first."""
    if len(cands) == 0:
        return np.zeros((0,), np.int64)
    order = stable_order(cands.scores)[:max_nms]
    boxes = cands.boxes[order]
    if not agnostic:
        boxes = boxes + (cands.class_ids[order].astype(np.float32) * np.float32(MAX_WH))[:, None]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    remaining = np.arange(len(order))  # unsuppressed candidates, best first
    keep: list[int] = []
    while remaining.size and len(keep) < max_det:
        i = remaining[0]
        keep.append(int(i))
        rest = remaining[1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        remaining = rest[~(overlap.astype(np.float64) > iou)]  # NaN (degenerate boxes) never suppresses
    return order[np.asarray(keep, dtype=np.int64)]
