"""``v8``: the anchor-free Ultralytics head (YOLOv8/11/12, and end-to-end checkpoints' one2many branch),
(N, 4 + nc, A) columns of xywh and class scores; NMS."""

from __future__ import annotations

import numpy as np

from ..types import Thresholds
from .base import Candidates, HeadFormat
from .decode import decode_rows
from .nms import nms


class V8Head(HeadFormat):
    """Ultralytics anchor-free detection (IoU 0.7 in predict and val)."""

    name = "v8"
    summary = "Ultralytics anchor-free: (N, 4 + nc, A), NMS"

    def select(self, raw_image: np.ndarray, th: Thresholds, iou: float) -> tuple[Candidates, np.ndarray]:
        """Class score above ``conf``, then class-aware NMS."""
        cands = decode_rows(self.rows(raw_image), False, th.conf, th.multi_label, list(th.classes) if th.classes else None)
        return cands, nms(cands, iou, max_det=th.max_det, agnostic=th.agnostic)


FORMAT = V8Head()
