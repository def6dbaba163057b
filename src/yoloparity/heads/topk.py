"""End-to-end (NMS-free) heads: the one-to-one head's top-k selection, in NumPy, with a total order.

YOLOv10 and YOLO26 replace NMS by a top-k over the one-to-one head's scores (the reference does it in the graph
with ``torch.topk``): the ``TOPK`` anchors with the highest best-class score, then the ``TOPK`` highest
(anchor, class) scores among those anchors. ``torch.topk`` leaves the order of equal scores to the kernel, and
near-equal scores swap between float32 runs — the reference's own float32 and float64 runs of YOLO26n on bus.jpg
keep different boxes. Here both stages sort by (score descending, anchor index, class index): equal inputs give
equal detections at any batch size, on any backend and device, and the audit can see which ranks are near-ties.

After the top-k, as the reference's predictor does: scores above ``conf``, the ``classes`` asked for, the first
``max_det``.
"""

from __future__ import annotations

import numpy as np

from .base import Candidates

TOPK = 300  # the reference heads' own max_det: the top-k is always this wide, the user's max_det then truncates


def topk_order(scores: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` descending, equal scores by the tie-break keys ascending (first key first)."""
    return np.lexsort((*reversed(tie_breaks), -scores.astype(np.float64)))


def topk_candidates(raw_image: np.ndarray, conf: float, max_det: int = TOPK, classes: list[int] | None = None,
                    k: int = TOPK) -> Candidates:
    """One image's detections from its one-to-one head output (4 + nc, A): xyxy boxes (input pixels), scores."""
    raw = np.asarray(raw_image, dtype=np.float32)
    boxes, scores = raw[:4].T, raw[4:].T  # (A, 4), (A, nc)
    n_anchors, nc = scores.shape
    k = min(k, n_anchors)
    anchors = topk_order(scores.max(axis=1, initial=-np.inf), np.arange(n_anchors))[:k]
    pair_scores = scores[anchors].ravel()  # (k * nc,) anchor-major
    pair_anchor = np.repeat(anchors, nc)
    pair_class = np.tile(np.arange(nc, dtype=np.int32), len(anchors))
    chosen = topk_order(pair_scores, pair_anchor, pair_class)[:k]
    keep = chosen[pair_scores[chosen] > conf]
    if classes is not None:
        keep = keep[np.isin(pair_class[keep], np.asarray(classes, dtype=np.int32))]
    keep = keep[:max_det]
    return Candidates(np.ascontiguousarray(boxes[pair_anchor[keep]]), pair_scores[keep].astype(np.float32),
                      pair_class[keep].astype(np.int32))
