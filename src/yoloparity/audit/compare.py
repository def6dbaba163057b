"""Compare one configuration's stages with the reference's, image by image, and localize divergence.

Every detection present on one side only is classified:

* ``borderline`` — explained by numeric noise of the size actually measured between the two raw
  outputs: its score is within epsilon of the confidence threshold, or the other side's NMS
  suppressed the same box with an IoU within epsilon of the NMS threshold;
* ``real`` — anything else (a different input, a different model, a decision far from any threshold).

Epsilon is taken from the image's own raw-output difference (x2, floor 1e-6), so identical
numerics leave no room for "borderline" — and only while that difference is noise-sized (scores
within ``score_noise``, boxes within ``box_noise`` px); a larger one is a different model, and its
differences are real. The first stage that differs — decoded image, letterboxed tensor, raw output,
candidates, NMS — is reported in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..pipeline.letterbox import boxes_to_original
from ..types import Detections
from .capture import ImageStages
from .match import box_iou, match

EPS_FLOOR = 1e-6


@dataclass
class Difference:
    file: str
    side: str  # "reference" or "config": where the detection exists
    class_id: int
    score: float
    box: list[float]
    kind: str  # "borderline" or "real"
    reason: str


@dataclass
class ImageComparison:
    file: str
    ref_counts: dict[int, int]
    cfg_counts: dict[int, int]
    ious: list[float]
    score_deltas: list[float]
    differences: list[Difference]
    raw_max_abs: float | None
    raw_max_rel: float | None
    stage: str | None = None
    detail: str | None = None


@dataclass
class ConfigComparison:
    label: str
    images: list[ImageComparison] = field(default_factory=list)
    run_to_run_identical: bool | None = None

    @property
    def differences(self) -> list[Difference]:
        return [d for im in self.images for d in im.differences]

    def count(self, kind: str) -> int:
        return sum(d.kind == kind for d in self.differences)


def _raw_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    if a.shape != b.shape:
        return None
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    rel = diff / np.maximum(np.abs(a.astype(np.float64)), 1e-6)
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def _score_columns(raw: np.ndarray, head: str) -> np.ndarray:
    return raw[:, 4:] if head == "v5" else raw[4:, :]


def _box_columns(raw: np.ndarray, head: str) -> np.ndarray:
    return raw[:, :4] if head == "v5" else raw[:4, :]


def _classify(det_box, det_cls, det_score, other: ImageStages, head: str, conf: float, nms_iou: float, eps_score: float,
              eps_iou: float, numerics_only: bool) -> tuple[str, str]:
    if not numerics_only:
        return "real", "the inputs or the model differ beyond numeric noise, so no difference is borderline"
    if abs(det_score - conf) <= eps_score:
        return "borderline", f"score {det_score:.5f} is within {eps_score:.2g} of the confidence threshold {conf}"
    od: Detections = other.detections
    cands = other.candidates
    same = np.flatnonzero(cands.class_ids == det_cls)
    if same.size:  # candidate boxes are in input pixels: map them back like the detections
        cand_boxes = boxes_to_original(cands.boxes[same], other.letterbox, rule=head)
        overlap = box_iou(np.asarray([det_box], np.float32), cand_boxes)[0]
        if overlap.size and overlap.max() >= 0.5:
            kept_same = od.boxes[od.class_ids == det_cls]
            if len(kept_same):
                s = float(box_iou(cand_boxes[[int(np.argmax(overlap))]], kept_same)[0].max())
                if abs(s - nms_iou) <= eps_iou:
                    return "borderline", f"suppressed by a box with IoU {s:.4f}, within {eps_iou:.2g} of the NMS threshold {nms_iou}"
    return "real", f"score {det_score:.4f} is far from the threshold and no suppression was borderline"


def _localize(ref: ImageStages, cfg: ImageStages, raw_diff, noise: tuple[float, float] | None,
              limits: tuple[float, float]) -> tuple[str, str]:
    if ref.image_digest != cfg.image_digest:
        return "decoding", "the decoded images differ"
    if ref.tensor.shape != cfg.tensor.shape:
        return "preprocessing", f"input {ref.tensor.shape[1]}x{ref.tensor.shape[2]} vs {cfg.tensor.shape[1]}x{cfg.tensor.shape[2]}"
    tensor_diff = float(np.abs(ref.tensor - cfg.tensor).max(initial=0.0))
    if tensor_diff > 0:
        return "preprocessing", f"letterboxed tensors differ, max |d| {tensor_diff:.3g}"
    if raw_diff is None or noise is None:
        return "model numerics", f"raw outputs have different shapes {ref.raw.shape} vs {cfg.raw.shape}"
    if noise[0] > limits[0] or noise[1] > limits[1]:
        return "model numerics", (f"raw max |d| {raw_diff[0]:.3g} (scores {noise[0]:.3g} vs noise limit {limits[0]:g}, "
                                  f"boxes {noise[1]:.3g} px vs {limits[1]:g})")
    if len(ref.candidates) != len(cfg.candidates) or not np.array_equal(ref.candidates.class_ids, cfg.candidates.class_ids):
        return "confidence filter", f"{len(ref.candidates)} vs {len(cfg.candidates)} candidates above the threshold"
    return "NMS", f"same candidates, different survivors ({len(ref.kept)} vs {len(cfg.kept)} kept)"


def compare_image(ref: ImageStages, cfg: ImageStages, head: str, conf: float, nms_iou: float,
                  score_noise: float = 1e-3, box_noise: float = 0.5) -> ImageComparison:
    m = match(ref.detections, cfg.detections)
    raw_diff = _raw_diff(ref.raw, cfg.raw)
    same_input = ref.tensor.shape == cfg.tensor.shape and ref.image_digest == cfg.image_digest
    noise = None
    score_eps, iou_eps = EPS_FLOOR, EPS_FLOOR
    if raw_diff is not None:
        score_d = float(np.abs(_score_columns(ref.raw, head) - _score_columns(cfg.raw, head)).max(initial=0.0))
        box_d = float(np.abs(_box_columns(ref.raw, head) - _box_columns(cfg.raw, head)).max(initial=0.0))
        noise = (score_d, box_d)
        score_eps = max(2 * score_d, EPS_FLOOR)
        iou_eps = max(4 * box_d / 8.0, EPS_FLOOR)  # a box shift of d px moves the IoU of boxes >= 8 px by at most ~4d/8
    noise_sized = noise is not None and noise[0] <= score_noise and noise[1] <= box_noise
    diffs = []
    for side, dets, idx, other in (("reference", ref.detections, m.only_a, cfg), ("config", cfg.detections, m.only_b, ref)):
        for i in idx:
            kind, reason = _classify(dets.boxes[i], int(dets.class_ids[i]), float(dets.scores[i]), other, head, conf, nms_iou,
                                     score_eps, iou_eps, numerics_only=same_input and noise_sized)
            diffs.append(Difference(ref.path, side, int(dets.class_ids[i]), round(float(dets.scores[i]), 5),
                                    [round(float(v), 2) for v in dets.boxes[i]], kind, reason))
    result = ImageComparison(
        file=ref.path,
        ref_counts=ref.detections.counts_per_class(),
        cfg_counts=cfg.detections.counts_per_class(),
        ious=[p[2] for p in m.pairs],
        score_deltas=[float(cfg.detections.scores[j] - ref.detections.scores[i]) for i, j, _ in m.pairs],
        differences=diffs,
        raw_max_abs=raw_diff[0] if raw_diff else None,
        raw_max_rel=raw_diff[1] if raw_diff else None,
    )
    if diffs:
        result.stage, result.detail = _localize(ref, cfg, raw_diff, noise, (score_noise, box_noise))
    return result


def same_detections(a: list[ImageStages], b: list[ImageStages]) -> bool:
    """Bitwise equality of two runs' detections (run-to-run determinism)."""
    return all(np.array_equal(x.detections.boxes, y.detections.boxes) and np.array_equal(x.detections.scores, y.detections.scores)
               and np.array_equal(x.detections.class_ids, y.detections.class_ids) for x, y in zip(a, b))
