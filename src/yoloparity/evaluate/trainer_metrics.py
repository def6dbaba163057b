"""The detection metric a model's own trainer prints: Ultralytics' (``yolo val``, ``DetMetrics``) and YOLOv5's
(``val.py``).

On a dataset that is not COCO, users compare with what their trainer printed after training, and that is not the
COCO protocol: the trainers match predictions to labels per image by IoU at each of the ten thresholds 0.50:0.95
(each prediction takes its best label, each label the most confident prediction that took it), then build one
precision/recall curve per class over all predictions sorted by confidence and integrate its precision envelope at
101 recall points with the trapezoid rule. There are no area ranges, no crowd handling and no cap of 100 detections per image; the mean runs
over the classes that have labels. Precision and recall are read at the confidence that maximizes the class-mean
F1 after a box filter over a 1000-point confidence grid.

Where the boxes are compared is where the two differ (found by measurement against the trainers' figures). Labels
are placed in the network input as each letterbox placed them (normalized label x resized side + the pad).
Ultralytics 8.4 compares there, in input pixels, with the predictions as the head gave them (not clipped) and the
labels at the integer pad; YOLOv5 maps both back to original pixels with its rule (one gain, the half-pixel pad,
clipped to the image: :func:`yoloparity.pipeline.letterbox.boxes_to_original`). And Ultralytics 8.4 ends each
precision/recall curve just past the last recall reached, YOLOv5 at recall 1.

Written from the definitions above; the figures equal the trainers' own (``tests/test_user_models.py``, against
``assets/user/reference-val-user.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..pipeline.letterbox import boxes_to_original
from ..types import Letterbox

TRAINER_METRICS = ("ultralytics", "yolov5")
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_EPS = 1e-16
_CURVE_POINTS = 1000


@dataclass(frozen=True)
class TrainerMetrics:
    """The figures a trainer's validator prints: mAP50-95, mAP50, precision and recall (at the best smoothed F1),
    per class; ``metric`` says whose."""
    metric: str
    mAP50_95: float
    mAP50: float
    precision: float
    recall: float
    images: int
    instances: int
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON values."""
        return asdict(self)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), xyxy, float32 as the trainers compute it."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return (inter / (area_a[:, None] + area_b[None, :] - inter + np.float32(1e-7))).astype(np.float32)


def match_predictions(pred_boxes: np.ndarray, pred_cls: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray
                      ) -> np.ndarray:
    """(n_pred, 10) bool: whether each prediction is a true positive at each IoU threshold, as both trainers match.

    At each threshold, among the (label, prediction) pairs of the same class with IoU >= threshold, every prediction
    keeps its highest-IoU label; then every label keeps, of the predictions that kept it, the one that comes first
    in the image's list (predictions are in descending score order, so the most confident one). This is not a
    one-to-one greedy assignment: a label that is only some prediction's second choice stays unmatched."""
    correct = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(pred_boxes) or not len(gt_boxes):
        return correct
    iou = _box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        labels, preds = np.nonzero(iou >= np.float32(threshold))
        if not len(labels):
            continue
        # highest IoU first; equal IoUs in the order the trainers' own sort leaves them (numpy's default sort of
        # the ascending values, reversed), so even ties resolve as theirs do
        order = np.argsort(iou[labels, preds])[::-1]
        labels, preds = labels[order], preds[order]
        _, best_label = np.unique(preds, return_index=True)  # first (highest IoU) pair of each prediction
        labels, preds = labels[best_label], preds[best_label]  # now in prediction order
        _, first_pred = np.unique(labels, return_index=True)  # first prediction of each label
        correct[preds[first_pred], t] = True
    return correct


def _average_precision(recall: np.ndarray, precision: np.ndarray, metric: str) -> float:
    """Area under the precision envelope, sampled at 101 recall points and integrated with the trapezoid rule. The
    curve ends at recall 1 with precision 0 for YOLOv5; Ultralytics 8.4 ends it just past the last recall reached
    (+0.001), so the ramp down to 0 adds almost nothing."""
    end = 1.0 if metric == "yolov5" else min(float(recall[-1]) + 1e-3, 1.0)
    rec = np.concatenate(([0.0], recall, [end]))
    pre = np.concatenate(([1.0], precision, [0.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(pre)))
    grid = np.linspace(0, 1, 101)
    values = np.interp(grid, rec, envelope)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2)


def _box_filter(y: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """A moving average over ``fraction`` of the curve, its ends extended (the trainers' F1 smoothing)."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def summarize(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, names: tuple[str, ...],
              metric: str, images: int) -> TrainerMetrics:
    """The trainers' per-class AP and mean figures from every prediction's TP row, confidence and class and every
    label's class."""
    classes, counts = np.unique(target_cls.astype(int), return_counts=True)
    if not len(tp) or not tp.any():  # the trainers report zeros when nothing matched
        return TrainerMetrics(metric, 0.0, 0.0, 0.0, 0.0, images, int(counts.sum()),
                              {names[c]: {"AP50_95": 0.0, "AP50": 0.0, "instances": int(n)} for c, n in zip(classes, counts)})
    order = np.argsort(-conf)  # numpy's default sort, as the trainers call it: equal scores keep their order
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    grid = np.linspace(0, 1, _CURVE_POINTS)
    ap = np.zeros((len(classes), tp.shape[1]))
    p_curve, r_curve = np.zeros((len(classes), _CURVE_POINTS)), np.zeros((len(classes), _CURVE_POINTS))
    for k, (c, n_labels) in enumerate(zip(classes, counts)):
        mine = pred_cls == c
        if not mine.any():
            continue
        tpc = tp[mine].cumsum(0)
        fpc = (1 - tp[mine]).cumsum(0)
        recall = tpc / (n_labels + _EPS)
        precision = tpc / (tpc + fpc)
        r_curve[k] = np.interp(-grid, -conf[mine], recall[:, 0], left=0)
        p_curve[k] = np.interp(-grid, -conf[mine], precision[:, 0], left=1)
        ap[k] = [_average_precision(recall[:, j], precision[:, j], metric) for j in range(tp.shape[1])]
    f1 = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    best = int(_box_filter(f1.mean(0)).argmax())
    per_class = {names[c] if c < len(names) else str(c): {"AP50_95": float(ap[k].mean()), "AP50": float(ap[k, 0]),
                                                          "instances": int(n)}
                 for k, (c, n) in enumerate(zip(classes, counts))}
    return TrainerMetrics(metric, float(ap.mean()), float(ap[:, 0].mean()), float(p_curve[:, best].mean()),
                          float(r_curve[:, best].mean()), images, int(counts.sum()), per_class)


def labels_in_input_pixels(gt_boxes_xywh: np.ndarray, lb: Letterbox, metric: str) -> np.ndarray:
    """Label boxes (COCO xywh in original pixels, from normalized YOLO labels) where the trainer's validator puts
    them in the network input, in its float32 arithmetic: normalized x resized side x letterbox ratio, plus the
    pad (Ultralytics 8.4: the integer pad the letterbox added; YOLOv5: the half-pixel pad, then clipped to the
    input as its collate normalizes them)."""
    if not len(gt_boxes_xywh):
        return np.zeros((0, 4), np.float32)
    (h0, w0), (h_in, w_in) = lb.orig_hw, lb.input_hw
    xywh = np.asarray(gt_boxes_xywh, np.float64)
    size = np.array([w0, h0, w0, h0], np.float64)
    centre = np.concatenate([xywh[:, :2] + xywh[:, 2:] / 2, xywh[:, 2:]], axis=1) / size  # normalized cx, cy, w, h
    centre = centre.astype(np.float32)
    left, top, right, bottom = lb.pad_px
    resized_w, resized_h = w_in - left - right, h_in - top - bottom  # the image's pixels inside the input
    resized = np.array([resized_w, resized_h, resized_w, resized_h], np.float32)
    pad = np.array(lb.pad if metric == "yolov5" else (left, top), np.float32)
    placed = centre * resized
    placed[:, :2] += pad
    size_in = np.array([w_in, h_in, w_in, h_in], np.float32)
    placed = placed / size_in  # normalized to the input, as the collate hands labels over, then back to pixels
    xyxy = np.concatenate([placed[:, :2] - placed[:, 2:] / 2, placed[:, :2] + placed[:, 2:] / 2], axis=1) * size_in
    if metric == "yolov5":  # its collate writes labels normalized to the input, clipped to it
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w_in - 1e-3)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h_in - 1e-3)
    return xyxy.astype(np.float32)


def _input_boxes(record, lb: Letterbox) -> np.ndarray:
    """A record's boxes in network-input pixels: as the head gave them when the record kept them, else its
    original-pixel boxes mapped forward (records written before they were kept; clipped at the image edges)."""
    if record.input_boxes is not None:
        return np.asarray(record.input_boxes, np.float32).reshape(-1, 4)
    boxes = np.asarray(record.boxes, np.float32).reshape(-1, 4).copy()
    gain_x, gain_y = lb.gain_xy if lb.gain_xy else (lb.scale, lb.scale)
    boxes[:, [0, 2]] = boxes[:, [0, 2]] * np.float32(gain_x) + np.float32(lb.pad_px[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]] * np.float32(gain_y) + np.float32(lb.pad_px[1])
    return boxes


def _compared_boxes(record, gt_xywh: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) in the space the trainer compares them: Ultralytics 8.4 in network-input pixels
    (predictions unclipped), YOLOv5 in original pixels (both mapped back and clipped to the image)."""
    lb = Letterbox.from_dict(record.letterbox)
    labels = labels_in_input_pixels(gt_xywh, lb, metric)
    if metric == "ultralytics":
        return _input_boxes(record, lb), labels
    return np.asarray(record.boxes, np.float32).reshape(-1, 4), boxes_to_original(labels, lb, rule="yolov5")


def trainer_metrics(records, dataset, metric: str) -> TrainerMetrics:
    """Score validation records (:class:`~.validator.ImageRecord`, with their letterboxes) against ``dataset``'s
    labels with ``metric`` ("ultralytics" or "yolov5")."""
    if metric not in TRAINER_METRICS:
        raise ValueError(f"metric must be one of {', '.join(TRAINER_METRICS)}, got {metric!r}")
    class_of = {cid: k for k, cid in enumerate(dataset.category_ids)}
    labels: dict[int, list] = {}
    for ann in dataset.gt["annotations"]:
        if not ann.get("iscrowd", 0) and ann["category_id"] in class_of:
            labels.setdefault(ann["image_id"], []).append((class_of[ann["category_id"]], ann["bbox"]))
    tps, confs, pred_classes, target_classes = [], [], [], []
    for record in records:
        rows = labels.get(record.image_id, [])
        pred_cls = np.asarray(record.class_ids, np.int64)
        if not len(pred_cls) and not rows:
            continue
        gt_cls = np.array([c for c, _ in rows], dtype=np.int64)
        boxes, gt_boxes = _compared_boxes(record, np.array([b for _, b in rows], np.float64).reshape(-1, 4), metric)
        tps.append(match_predictions(boxes, pred_cls, gt_boxes, gt_cls))
        confs.append(np.asarray(record.scores, np.float32))
        pred_classes.append(pred_cls)
        target_classes.append(gt_cls)
    cat = lambda parts, shape, dtype: np.concatenate(parts) if parts else np.zeros(shape, dtype)  # noqa: E731
    return summarize(cat(tps, (0, len(IOU_THRESHOLDS)), bool), cat(confs, (0,), np.float32),
                     cat(pred_classes, (0,), np.int64), cat(target_classes, (0,), np.int64), dataset.names, metric,
                     len(records))
