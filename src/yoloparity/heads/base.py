"""What every head format shares: the candidates it selects from and the :class:`HeadFormat` interface.

A head format is everything that depends on how a network's raw output is laid out and turned into detections:
the layout a backend must return (checked before anything is decoded), how one image's raw output becomes
candidates and which of them are kept (NMS, top-k, or the file's own selection), how boxes map back to the
original image (the family's rule), the reference IoU defaults, the export's axes, and what the audit needs to
call a difference borderline. ``v5``, ``v8``, ``e2e`` and ``dets`` are one module each in this package;
:mod:`yoloparity.heads` registers them by name. Adding a format is one module plus one registry line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Thresholds


@dataclass(frozen=True)
class Candidates:
    """One image's candidate detections before the final selection: xyxy boxes in input pixels."""

    boxes: np.ndarray  # (n, 4) float32 xyxy, input pixels
    scores: np.ndarray  # (n,) float32
    class_ids: np.ndarray  # (n,) int32

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre-size boxes (n, 4) to corner boxes, in float32 as the references compute them."""
    half = xywh[:, 2:4] / np.float32(2)
    return np.concatenate((xywh[:, 0:2] - half, xywh[:, 0:2] + half), axis=1).astype(np.float32, copy=False)


class HeadFormat:
    """One raw-output format. Subclasses set the class attributes and implement :meth:`select`.

    ``layout``: ``"rows"`` when the raw output is (N, A, C) (one row per anchor), ``"columns"`` when it is
    (N, C, A). ``channels_besides_classes``: C - nc (5 for box + objectness, 4 for a box); ``fixed_channels``: a
    C that does not depend on nc (6 for selected detections). ``anchors_per_cell``: 3 for YOLOv5's anchor boxes,
    1 anchor-free; None where the output is not one row per anchor. ``selection``: ``"nms"``, ``"topk"`` (an
    end-to-end head, no NMS) or ``"given"`` (the file selected already). ``box_rule``: how boxes map back to the
    original image (:func:`yoloparity.pipeline.letterbox.boxes_to_original`). ``predict_iou``/``val_iou``: the
    family's reference NMS thresholds (recorded as the reference's settings; unused where ``selection`` is not NMS). ``inferred_from_shape``: a file without our metadata is recognised by its
    output shape alone (an ``e2e`` output looks like ``v8``'s and is declared by the spec)."""

    name = ""
    summary = ""
    layout = "columns"
    channels_besides_classes: int | None = 4
    fixed_channels: int | None = None
    anchors_per_cell: int | None = 1
    selection = "nms"
    box_rule = "ultralytics"
    predict_iou = 0.7
    val_iou = 0.7
    inferred_from_shape = True

    def reference_iou(self, validating: bool) -> float:
        """The family's reference IoU: its validator's, or its predictor's (what ``iou`` None resolves to)."""
        return self.val_iou if validating else self.predict_iou

    def channels(self, nc: int) -> int:
        """C, the raw output's per-anchor (or per-detection) length for ``nc`` classes."""
        return self.fixed_channels if self.fixed_channels is not None else nc + self.channels_besides_classes

    def output_shape(self, n: int, anchors: int | None, nc: int) -> tuple:
        """The raw output's shape for a batch of ``n`` (``anchors`` None where it is not fixed by the input)."""
        c = self.channels(nc)
        return (n, anchors, c) if self.layout == "rows" else (n, c, anchors)

    def layout_text(self) -> str:
        """The output's layout in words for error messages: ``(N, A, 5+nc)``, ``(N, 4+nc, A)``, ``(N, K, 6)``."""
        c = str(self.fixed_channels) if self.fixed_channels is not None else f"{self.channels_besides_classes}+nc"
        a = "A" if self.anchors_per_cell is not None else "K"
        return f"(N, {a}, {c})" if self.layout == "rows" else f"(N, {c}, {a})"

    def channel_and_anchor_dims(self, out_shape) -> tuple:
        """(channels dim, anchors dim) of a 3-D output shape, in this format's layout."""
        return (out_shape[2], out_shape[1]) if self.layout == "rows" else (out_shape[1], out_shape[2])

    def export_axes(self) -> tuple[dict[int, str], int]:
        """The ONNX output's dynamic axes and the index of its fixed channel dimension."""
        if self.layout == "rows":
            return {0: "batch", 1: "anchors"}, 2
        return {0: "batch", 2: "anchors"}, 1

    def rows(self, raw_image: np.ndarray) -> np.ndarray:
        """One image's raw output as (A, C) rows."""
        return raw_image if self.layout == "rows" else raw_image.T

    def box_values(self, raw: np.ndarray) -> np.ndarray:
        """The raw output's box coordinates (one image or a batch), for the audit's noise measurement."""
        return raw[..., :4] if self.layout == "rows" else raw[..., :4, :]

    def score_values(self, raw: np.ndarray) -> np.ndarray:
        """The raw output's scores (objectness and class scores where both are outputs)."""
        return raw[..., 4:] if self.layout == "rows" else raw[..., 4:, :]

    def scale_boxes(self, raw: np.ndarray, scale: np.ndarray) -> None:
        """Multiply the box coordinates of a raw batch by ``scale`` (x, y, x, y) in place (normalized boxes)."""
        if self.layout == "rows":
            raw[..., :4] *= scale
        else:
            raw[..., :4, :] *= scale[:, None]

    def select(self, raw_image: np.ndarray, th: Thresholds, iou: float) -> tuple[Candidates, np.ndarray]:
        """The candidates above the confidence threshold and the indices of those kept, in the order kept."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"HeadFormat({self.name!r})"
