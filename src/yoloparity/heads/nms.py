"""Deterministic greedy non-maximum suppression in NumPy, the same on every backend.

Order is stable: score descending, then candidate index ascending, so ties resolve the same way
everywhere (the references' ``argsort(descending=True)`` does not promise that). Classes are
kept apart the way the references do it — each class's boxes are shifted by ``class * 7680``
pixels — and IoU is computed in float32 as torchvision's CPU kernel does, so borderline
suppressions match the reference; a box is dropped when its IoU with a kept box is > ``iou``.
"""

from __future__ import annotations

import numpy as np

from .base import Candidates

MAX_WH = 7680  # the references' class offset: larger than any image side
MAX_NMS = 30000  # the references' cap on boxes entering NMS
NMS_BLOCK = 256  # candidates decided per vectorized step


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
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):  # degenerate boxes: NaN IoU, which never suppresses
        keep = _greedy(boxes, areas, iou, max_det)
    return order[np.asarray(keep, dtype=np.int64)]


def _pairwise_iou(b1: np.ndarray, a1: np.ndarray, b2: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """IoU of every box of ``b1`` with every box of ``b2`` in float32, torchvision's formula."""
    w = np.maximum(np.float32(0), np.minimum(b1[:, None, 2], b2[None, :, 2]) - np.maximum(b1[:, None, 0], b2[None, :, 0]))
    h = np.maximum(np.float32(0), np.minimum(b1[:, None, 3], b2[None, :, 3]) - np.maximum(b1[:, None, 1], b2[None, :, 1]))
    inter = w * h
    return inter / (a1[:, None] + a2[None, :] - inter)


def _greedy(boxes: np.ndarray, areas: np.ndarray, iou: float, max_det: int) -> list[int]:
    """Greedy suppression over score-sorted boxes, a block of candidates at a time.

    Exactly the one-box-at-a-time greedy result: a block's candidates are first checked against
    every box kept so far in one matrix, then decided in order with one precomputed intra-block
    IoU matrix — a few vectorized operations per block instead of several per kept box.
    """
    n = len(boxes)
    keep: list[int] = []
    for start in range(0, n, NMS_BLOCK):
        cand = np.arange(start, min(start + NMS_BLOCK, n))
        if keep:
            kept = np.asarray(keep)
            over_kept = _pairwise_iou(boxes[kept], areas[kept], boxes[cand], areas[cand]).astype(np.float64) > iou
            cand = cand[~over_kept.any(axis=0)]
        if cand.size == 0:
            continue
        over = _pairwise_iou(boxes[cand], areas[cand], boxes[cand], areas[cand]).astype(np.float64) > iou
        suppressed = np.zeros(cand.size, dtype=bool)
        for j in range(cand.size):
            if suppressed[j]:
                continue
            keep.append(int(cand[j]))
            if len(keep) >= max_det:
                return keep
            suppressed |= over[j]
    return keep
