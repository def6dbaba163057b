"""``dets``: a third-party file whose graph ends in its exporter's own top-k, (N, K, 6) rows x1, y1, x2, y2, score,
class — read as they are."""

from __future__ import annotations

import numpy as np

from ..types import Thresholds
from .base import Candidates, HeadFormat

MAX_ROWS = 1000  # an (N, K, 6) output with K up to this is a list of detections, not a head (v5 has 25200 rows)


class DetectionsHead(HeadFormat):
    """Already selected in the graph: threshold, filter and truncate as the reference's predictor does."""

    name = "dets"
    summary = "selected detections: (N, K, 6) x1, y1, x2, y2, score, class"
    layout = "rows"
    channels_besides_classes = None
    fixed_channels = 6
    anchors_per_cell = None
    selection = "given"

    def score_values(self, raw: np.ndarray) -> np.ndarray:
        """The score column only (the class column is not a score)."""
        return raw[..., 4:5]

    def select(self, raw_image: np.ndarray, th: Thresholds, iou: float) -> tuple[Candidates, np.ndarray]:
        """The rows above ``conf`` (of the ``classes`` asked for), the first ``max_det``."""
        rows = np.asarray(raw_image, dtype=np.float32)
        keep = np.flatnonzero(rows[:, 4] > th.conf)
        if th.classes:
            keep = keep[np.isin(rows[keep, 5].astype(np.int32), np.asarray(th.classes, dtype=np.int32))]
        keep = keep[: th.max_det]
        cands = Candidates(np.ascontiguousarray(rows[keep, :4]), rows[keep, 4].copy(), rows[keep, 5].astype(np.int32))
        return cands, np.arange(len(cands))


FORMAT = DetectionsHead()
