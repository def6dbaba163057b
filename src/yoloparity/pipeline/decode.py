"""Decode a raw head tensor into candidate boxes, once for every backend (parity contract 2).

Backends only produce the raw head output; this module turns one image's slice of it into
candidates — xyxy boxes in input pixels, scores, class ids — with the references' rules:

* ``v5``: (A, 5 + nc) rows; keep rows whose objectness > conf, score = objectness x class score.
* ``v8``: (4 + nc, A) columns; score = class score.
* single-label (predict): the best class per box, kept if its score > conf;
  multi-label (val): every (box, class) pair whose score > conf, in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    boxes: np.ndarray  # (n, 4) float32 xyxy, input pixels
    scores: np.ndarray  # (n,) float32
    class_ids: np.ndarray  # (n,) int32

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / np.float32(2)
    return np.concatenate((xywh[:, 0:2] - half, xywh[:, 0:2] + half), axis=1).astype(np.float32, copy=False)


def rows_of(raw_image: np.ndarray, head: str) -> np.ndarray:
    """One image's raw output as (A, 4 [+1] + nc) rows, whatever the head's layout."""
    if head == "v5":
        return raw_image
    if head in ("v8", "e2e"):
        return raw_image.T
    raise ValueError(f"unknown head format {head!r}")


def decode(
    raw_image: np.ndarray,
    head: str,
    conf: float,
    multi_label: bool = False,
    classes: list[int] | None = None,
) -> Candidates:
    """Candidates of one image from its raw head output (no batch axis)."""
    rows = rows_of(np.asarray(raw_image, dtype=np.float32), head)
    if head == "v5":
        rows = rows[rows[:, 4] > conf]
        cls = rows[:, 5:] * rows[:, 4:5]
    else:
        cls_all = rows[:, 4:]
        rows = rows[cls_all.max(axis=1, initial=-np.inf) > conf] if len(rows) else rows
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
