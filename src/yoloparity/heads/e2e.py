"""``e2e``: the one-to-one head of end-to-end checkpoints (YOLOv10, YOLO26): v8's layout with xyxy boxes, and a
deterministic top-k instead of NMS (:mod:`yoloparity.heads.topk`)."""

from __future__ import annotations

import numpy as np

from ..types import Thresholds
from .base import Candidates, HeadFormat
from .topk import topk_candidates


class EndToEndHead(HeadFormat):
    """No NMS: the selection itself is the top-k, so near-equal scores at its boundary are the borderline cases."""

    name = "e2e"
    summary = "end-to-end one2one: (N, 4 + nc, A) xyxy, top-k (no NMS)"
    selection = "topk"
    inferred_from_shape = False  # the same shape as v8's: the spec declares it

    def select(self, raw_image: np.ndarray, th: Thresholds, iou: float) -> tuple[Candidates, np.ndarray]:
        """The top-k (score, then anchor and class index) above ``conf``; every candidate is kept."""
        cands = topk_candidates(raw_image, th.conf, th.max_det, list(th.classes) if th.classes else None)
        return cands, np.arange(len(cands))


FORMAT = EndToEndHead()
