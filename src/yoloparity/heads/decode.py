"""Raw rows to candidates with the references' confidence rules (shared by the ``v5`` and ``v8`` formats).

Rows are (A, 4 [+1] + nc): an xywh box, YOLOv5's objectness where the format has it, the class scores.

* with objectness (``v5``): keep rows whose objectness > conf, score = objectness x class score;
* without (``v8``): score = class score;
* single-label (predict): the best class per box, kept if its score > conf;
  multi-label (val): every (box, class) pair whose score > conf, in row-major order.
"""

from __future__ import annotations

import numpy as np

from .base import Candidates, xywh_to_xyxy


def decode_rows(rows: np.ndarray, objectness: bool, conf: float, multi_label: bool = False,
                classes: list[int] | None = None) -> Candidates:
    """Candidates of one image from its (A, C) rows."""
    rows = np.asarray(rows, dtype=np.float32)
    if objectness:
        rows = rows[rows[:, 4] > conf]
        cls = rows[:, 5:] * rows[:, 4:5]
    else:
        rows = rows[rows[:, 4:].max(axis=1, initial=-np.inf) > conf] if len(rows) else rows
        cls = rows[:, 4:]
    boxes = xywh_to_xyxy(rows[:, :4])
    if multi_label:
        i, j = np.nonzero(cls > conf)
        out = Candidates(boxes[i], cls[i, j], j.astype(np.int32))
    else:
        j = cls.argmax(axis=1) if len(cls) else np.zeros((0,), np.int64)
        best = cls[np.arange(len(cls)), j]
        keep = best > conf
        out = Candidates(boxes[keep], best[keep], j[keep].astype(np.int32))
    if classes is not None:
        keep = np.isin(out.class_ids, np.asarray(classes, dtype=np.int32))
        out = Candidates(out.boxes[keep], out.scores[keep], out.class_ids[keep])
    return out
