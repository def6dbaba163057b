"""``v5``: YOLOv5's anchor-based head, (N, A, 5 + nc) rows of xywh, objectness and class scores; NMS."""

from __future__ import annotations

import numpy as np

from ..types import Thresholds
from .base import Candidates, HeadFormat
from .decode import decode_rows
from .nms import nms


class V5Head(HeadFormat):
    """YOLOv5 (``detect.py``/``val.py`` conventions: IoU 0.45 predict, 0.6 val; its own box mapping)."""

    name = "v5"
    summary = "YOLOv5: anchors + objectness, (N, A, 5 + nc), NMS"
    layout = "rows"
    channels_besides_classes = 5
    anchors_per_cell = 3
    box_rule = "yolov5"
    predict_iou = 0.45
    val_iou = 0.6

    def select(self, raw_image: np.ndarray, th: Thresholds, iou: float) -> tuple[Candidates, np.ndarray]:
        """Objectness x class score above ``conf``, then class-aware NMS."""
        cands = decode_rows(self.rows(raw_image), True, th.conf, th.multi_label, list(th.classes) if th.classes else None)
        return cands, nms(cands, iou, max_det=th.max_det, agnostic=th.agnostic)


FORMAT = V5Head()
