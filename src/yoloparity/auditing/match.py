"""Match two detection sets one-to-one: same class, IoU >= 0.5, best-scoring reference box first.

A box with no area (x2 <= x1 or y2 <= y1 — what an untrained or degenerate head emits, and what a top-k keeps
without NMS to weed it out) has no IoU with anything; two such boxes within ``DEGENERATE_PX`` of each other in
every coordinate count as the same box, so identical outputs are never reported as differences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Detections

DEGENERATE_PX = 0.5


def _matching_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box_iou, with near-identical zero-area boxes scored 1."""
    ious = box_iou(a, b)
    flat_a = (a[:, 2] <= a[:, 0]) | (a[:, 3] <= a[:, 1])
    flat_b = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if flat_a.any() and flat_b.any():
        close = np.abs(a[:, None, :].astype(np.float64) - b[None, :, :]).max(axis=2) <= DEGENERATE_PX
        ious = np.where(flat_a[:, None] & flat_b[None, :] & close, 1.0, ious)
    return ious


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class Matching:
    """Detections of two runs paired one to one (same class, best IoU): the pairs and each side's unmatched."""
    pairs: list[tuple[int, int, float]]  # (index in a, index in b, IoU)
    only_a: list[int]
    only_b: list[int]


def match(a: Detections, b: Detections, min_iou: float = 0.5) -> Matching:
    """Greedy one-to-one matching per class: a's detections by score (desc, index asc), each to b's best IoU."""
    pairs: list[tuple[int, int, float]] = []
    used_b = np.zeros(len(b), dtype=bool)
    matched_a = np.zeros(len(a), dtype=bool)
    for cls in np.union1d(a.class_ids, b.class_ids):
        ia = np.flatnonzero(a.class_ids == cls)
        ib = np.flatnonzero(b.class_ids == cls)
        if ia.size == 0 or ib.size == 0:
            continue
        ia = ia[np.argsort(-a.scores[ia], kind="stable")]
        ious = _matching_iou(a.boxes[ia], b.boxes[ib])
        for row, i in enumerate(ia):
            candidates = np.where(used_b[ib], -1.0, ious[row])
            k = int(np.argmax(candidates))
            if candidates[k] >= min_iou:
                used_b[ib[k]] = True
                matched_a[i] = True
                pairs.append((int(i), int(ib[k]), float(candidates[k])))
    return Matching(pairs, np.flatnonzero(~matched_a).tolist(), np.flatnonzero(~used_b).tolist())
