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

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import YoloParityError
from ..heads import HeadFormat
from ..heads import head_format as head_format_of
from ..heads.topk import TOPK
from ..pipeline.letterbox import boxes_to_original
from ..types import Detections, JsonReport
from .capture import ImageStages
from .match import box_iou, match

MAX_LISTED = 200

EPS_FLOOR = 1e-6


@dataclass(frozen=True)
class Tolerances:
    """What a configuration may differ by and still pass: real differences, mAP, and the raw-output noise
    below which a one-sided detection can be borderline. ``--tolerance KEY=VALUE`` sets them."""
    real: int = 0  # real differences allowed per configuration
    map_delta: float = 0.005  # |mAP50-95 difference| allowed, when --data gives ground truth
    score_noise: float = 1e-3  # raw score differences up to this are numeric noise (borderline possible)
    box_noise: float = 0.5  # raw box differences (input px) up to this are numeric noise

    def __post_init__(self) -> None:
        """Negative tolerances mean nothing: refused, naming the key."""
        for key in self.__dataclass_fields__:
            if getattr(self, key) < 0:
                raise YoloParityError(None, f"--tolerance {key}={getattr(self, key)}: must be >= 0")

    @classmethod
    def parse(cls, items: list[str] | None) -> "Tolerances":
        """``["real=1", "map_delta=0.01"]`` → Tolerances; an unknown key or a non-number is an error naming it."""
        values: dict = {}
        for item in items or []:
            key, sep, value = item.partition("=")
            if not sep or key not in cls.__dataclass_fields__:
                raise YoloParityError(None, f"--tolerance '{item}': expected KEY=VALUE with KEY one of "
                                            f"{', '.join(cls.__dataclass_fields__)}")
            try:
                values[key] = int(value) if key == "real" else float(value)  # noqa: PERF203
            except ValueError:
                raise YoloParityError(None, f"--tolerance '{item}': '{value}' is not a number") from None
        return cls(**values)


@dataclass
class Difference:
    """A detection one run has and the other has not, with why it is ``real`` or ``borderline``."""
    file: str
    side: str  # "reference" or "config": where the detection exists
    class_id: int
    score: float
    box: list[float]
    kind: str  # "borderline" or "real"
    reason: str


@dataclass
class ImageComparison:
    """One image of two runs compared: class counts, matched IoUs and score deltas, the differences, the raw
    output's largest difference and the stage where the image first diverges."""
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
    """Every image of one configuration compared with the reference, and whether its repeated runs agreed."""
    label: str
    images: list[ImageComparison] = field(default_factory=list)
    run_to_run_identical: bool | None = None

    @property
    def differences(self) -> list[Difference]:
        """All differences over all images, in image order."""
        return [d for im in self.images for d in im.differences]

    def count(self, kind: str) -> int:
        """How many differences are of ``kind`` ("real" or "borderline")."""
        return sum(d.kind == kind for d in self.differences)


def _raw_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    if a.shape != b.shape:
        return None
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    rel = diff / np.maximum(np.abs(a.astype(np.float64)), 1e-6)
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def _classify(det_box, det_cls, det_score, other: ImageStages, head: HeadFormat, conf: float, nms_iou: float, eps_score: float,
              eps_iou: float, numerics_only: bool, eps_source: str = "measured") -> tuple[str, str]:
    if not numerics_only:
        return "real", "the inputs or the model differ beyond numeric noise, so no difference is borderline"
    if abs(det_score - conf) <= eps_score:
        return "borderline", (f"score {det_score:.5f} is within {eps_score:.2g} ({eps_source}) of the confidence "
                              f"threshold {conf}")
    if head.selection == "topk" and other.candidates is not None and len(other.candidates) >= TOPK:
        boundary = float(other.candidates.scores.min())  # the other side's top-k was full: its last kept score
        if abs(det_score - boundary) <= eps_score:
            return "borderline", (f"score {det_score:.5f} is within {eps_score:.2g} of the other run's top-{TOPK} rank "
                                  f"boundary {boundary:.5f} (a near-tie decides which one the top-k keeps)")
        return "real", f"score {det_score:.4f} is far from the confidence threshold and from the top-k boundary"
    od: Detections = other.detections
    cands = other.candidates
    same = np.flatnonzero(cands.class_ids == det_cls) if cands is not None else np.zeros(0, np.int64)
    if same.size:  # candidate boxes are in input pixels: map them back like the detections
        cand_boxes = boxes_to_original(cands.boxes[same], other.letterbox, rule=head.box_rule)
        overlap = box_iou(np.asarray([det_box], np.float32), cand_boxes)[0]
        if overlap.size and overlap.max() >= 0.5:
            kept_same = od.boxes[od.class_ids == det_cls]
            if len(kept_same):
                s = float(box_iou(cand_boxes[[int(np.argmax(overlap))]], kept_same)[0].max())
                if abs(s - nms_iou) <= eps_iou:
                    return "borderline", f"suppressed by a box with IoU {s:.4f}, within {eps_iou:.2g} of the NMS threshold {nms_iou}"
    if cands is None:
        return "real", f"score {det_score:.4f} is far from the threshold (NMS not checked: no raw output recorded)"
    return "real", f"score {det_score:.4f} is far from the threshold and no suppression was borderline"


def _localize(ref: ImageStages, cfg: ImageStages, raw_diff, noise: tuple[float, float] | None,
              limits: tuple[float, float], head: HeadFormat) -> tuple[str, str]:
    if ref.image_digest and cfg.image_digest and ref.image_digest != cfg.image_digest:
        return "decoding", "the decoded images differ"
    if ref.input_hw != cfg.input_hw:
        return "preprocessing", f"input {ref.input_hw[0]}x{ref.input_hw[1]} vs {cfg.input_hw[0]}x{cfg.input_hw[1]}"
    if ref.tensor is not None and cfg.tensor is not None:
        tensor_diff = float(np.abs(ref.tensor - cfg.tensor).max(initial=0.0))
        if tensor_diff > 0:
            return "preprocessing", f"letterboxed tensors differ, max |d| {tensor_diff:.3g}"
    if ref.raw is None or cfg.raw is None:
        return "not localized", "same input shape; the run records keep no raw output of this image (--record-raw N)"
    if raw_diff is None or noise is None:
        return "model numerics", f"raw outputs have different shapes {ref.raw.shape} vs {cfg.raw.shape}"
    if noise[0] > limits[0] or noise[1] > limits[1]:
        return "model numerics", (f"raw max |d| {raw_diff[0]:.3g} (scores {noise[0]:.3g} vs noise limit {limits[0]:g}, "
                                  f"boxes {noise[1]:.3g} px vs {limits[1]:g})")
    if head.selection == "topk":  # no NMS: the selection itself is the top-k
        return "top-k", (f"near-equal scores ranked differently: {len(ref.candidates)} vs {len(cfg.candidates)} kept "
                         "(one-to-one head, no NMS)")
    if len(ref.candidates) != len(cfg.candidates) or not np.array_equal(ref.candidates.class_ids, cfg.candidates.class_ids):
        return "confidence filter", f"{len(ref.candidates)} vs {len(cfg.candidates)} candidates above the threshold"
    return "NMS", f"same candidates, different survivors ({len(ref.kept)} vs {len(cfg.kept)} kept)"


def compare_image(ref: ImageStages, cfg: ImageStages, head_format: str, conf: float, nms_iou: float,
                  score_noise: float = 1e-3, box_noise: float = 0.5, branches: tuple[str, str] = ("", "")
                  ) -> ImageComparison:
    """The one comparison of two runs of one image, live (audit) or loaded from run records (compare).

    Without both raw outputs (a record that did not keep them) the noise cannot be measured: a one-sided
    detection is then borderline only when its score is within ``score_noise`` (assumed) of the threshold."""
    m = match(ref.detections, cfg.detections)
    fmt = head_format_of(head_format)
    other_head = branches[0] != branches[1]  # one2one vs one2many of one checkpoint: other outputs, other selection
    has_raw = ref.raw is not None and cfg.raw is not None and not other_head
    raw_diff = _raw_diff(ref.raw, cfg.raw) if has_raw else None
    digests_differ = bool(ref.image_digest and cfg.image_digest and ref.image_digest != cfg.image_digest)
    same_input = ref.input_hw == cfg.input_hw and not digests_differ
    noise = None
    score_eps, iou_eps, eps_source = EPS_FLOOR, EPS_FLOOR, "measured"
    if raw_diff is not None:
        score_d = float(np.abs(fmt.score_values(ref.raw) - fmt.score_values(cfg.raw)).max(initial=0.0))
        box_d = float(np.abs(fmt.box_values(ref.raw) - fmt.box_values(cfg.raw)).max(initial=0.0))
        noise = (score_d, box_d)
        score_eps = max(2 * score_d, EPS_FLOOR)
        iou_eps = max(4 * box_d / 8.0, EPS_FLOOR)  # a box shift of d px moves the IoU of boxes >= 8 px by at most ~4d/8
    noise_sized = noise is not None and noise[0] <= score_noise and noise[1] <= box_noise
    if not has_raw:
        noise_sized, score_eps, eps_source = True, score_noise, "assumed: no raw outputs recorded"
    if other_head:
        noise_sized = False
    diffs = []
    for side, dets, idx, other in (("reference", ref.detections, m.only_a, cfg), ("config", cfg.detections, m.only_b, ref)):
        for i in idx:
            kind, reason = _classify(dets.boxes[i], int(dets.class_ids[i]), float(dets.scores[i]), other, fmt, conf, nms_iou,
                                     score_eps, iou_eps, numerics_only=same_input and noise_sized, eps_source=eps_source)
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
    if diffs and other_head:
        result.stage, result.detail = "head", f"{branches[0]} vs {branches[1]} head of the same checkpoint (top-k vs NMS)"
    elif diffs:
        result.stage, result.detail = _localize(ref, cfg, raw_diff, noise, (score_noise, box_noise), fmt)
    return result


def same_detections(a: list[ImageStages], b: list[ImageStages]) -> bool:
    """Bitwise equality of two runs' detections (run-to-run determinism)."""
    return all(np.array_equal(x.detections.boxes, y.detections.boxes) and np.array_equal(x.detections.scores, y.detections.scores)
               and np.array_equal(x.detections.class_ids, y.detections.class_ids) for x, y in zip(a, b))


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.abs(np.asarray(values, dtype=np.float64))
    return {"max": float(arr.max()), "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()), "min": float(arr.min())}


@dataclass(frozen=True)
class Distance:
    """How far one run is from another taken as the truth (the float64 run): the raw output's largest difference, and
    the images and detections that differ."""
    raw_max_abs: float | None
    images_differing: int
    detections_differing: int
    real: int
    borderline: int

    @classmethod
    def of(cls, comp: ConfigComparison) -> "Distance":
        """The distance a comparison with the truth measured."""
        raws = [im.raw_max_abs for im in comp.images if im.raw_max_abs is not None]
        return cls(max(raws) if raws else None, sum(bool(im.differences) for im in comp.images), len(comp.differences),
                   comp.count("real"), comp.count("borderline"))


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's comparison with the reference, as measured (audit and compare share it): counts, the raw
    difference, where images first diverge, the differences themselves (the first 200) and, when measured, the first
    divergent layer, the distance to the float64 truth and the mAP. The verdict is not in it: :func:`decide`."""
    label: str
    config: dict
    images_compared: int
    images_differing: int
    real: int
    borderline: int
    per_class: dict[str, dict[str, int]]
    iou: dict[str, float] | None
    score_delta: dict[str, float] | None
    raw: dict[str, Any]
    first_divergence: dict[str, int]
    localization: tuple[dict[str, Any], ...]
    run_to_run_identical: bool | None
    differences: tuple[Difference, ...]
    layer_divergence: dict[str, Any] | None = None  # --layers: the first layer whose output differs
    distance_to_fp64: Distance | None = None  # with a float64 run in the audit (None for that run itself)
    mAP50_95: float | None = None  # --data: on the audited images with ground truth
    mAP_delta: float | None = None

    def replace(self, **changes: Any) -> "ConfigSummary":
        """A copy with measurements added (a later stage's: layers, truth, mAP)."""
        return dataclasses.replace(self, **changes)

    def outside_tolerance(self, tol: Tolerances) -> tuple[str, ...]:
        """Why this configuration is outside ``tol`` (empty: within): real differences over ``tol.real``, repeated
        runs that disagreed, an mAP50-95 difference over ``tol.map_delta``."""
        reasons = []
        if self.real > tol.real:
            reasons.append(f"{self.real} real differences (tolerance {tol.real})")
        if self.run_to_run_identical is False:
            reasons.append("repeated runs gave other detections")
        if self.mAP_delta is not None and abs(self.mAP_delta) > tol.map_delta:
            reasons.append(f"mAP50-95 differs by {self.mAP_delta:+.4f} (tolerance {tol.map_delta})")
        return tuple(reasons)

    def to_dict(self, outside: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The JSON form; with ``outside`` (the verdict's reasons) also ``within_tolerance`` and
        ``outside_tolerance``. Measurements not taken are null."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(localization=list(self.localization), differences=[asdict(d) for d in self.differences],
                   distance_to_fp64=asdict(self.distance_to_fp64) if self.distance_to_fp64 else None)
        if outside is not None:
            out.update(within_tolerance=not outside, outside_tolerance=list(outside))
        return out


def summarize(comp: ConfigComparison, config: dict, names: tuple[str, ...]) -> ConfigSummary:
    """One configuration's comparison summarized (audit and compare share it)."""
    ref_counts: Counter[int] = Counter()
    cfg_counts: Counter[int] = Counter()
    stages: Counter[str] = Counter(im.stage for im in comp.images if im.stage)
    for im in comp.images:
        ref_counts.update(im.ref_counts)
        cfg_counts.update(im.cfg_counts)
    per_class = {names[k]: {"reference": ref_counts.get(k, 0), "config": cfg_counts.get(k, 0)}
                 for k in sorted(set(ref_counts) | set(cfg_counts))}
    raws = [im.raw_max_abs for im in comp.images if im.raw_max_abs is not None]
    rels = [im.raw_max_rel for im in comp.images if im.raw_max_rel is not None]
    return ConfigSummary(
        label=comp.label, config=config, images_compared=len(comp.images),
        images_differing=sum(bool(im.differences) for im in comp.images),
        real=comp.count("real"), borderline=comp.count("borderline"), per_class=per_class,
        iou=_stats([v for im in comp.images for v in im.ious]),
        score_delta=_stats([v for im in comp.images for v in im.score_deltas]),
        raw={"max_abs": max(raws) if raws else None, "max_rel": max(rels) if rels else None,
             "atol_that_passes": max(raws) if raws else None, "images_with_other_shapes": len(comp.images) - len(raws)},
        first_divergence=dict(stages),
        localization=tuple({"file": im.file, "stage": im.stage, "detail": im.detail}
                           for im in comp.images if im.stage)[:MAX_LISTED],
        run_to_run_identical=comp.run_to_run_identical,
        differences=tuple(comp.differences[:MAX_LISTED]))


@dataclass(frozen=True)
class Verdict:
    """The verdict, decided in one place (:func:`decide`): whether the run passes and, per configuration in order,
    why it is outside tolerance (empty: within)."""
    passed: bool
    reasons: tuple[tuple[str, ...], ...]

    @property
    def status(self) -> str:
        """"pass" or "fail", as the JSON and the exit code say it."""
        return "pass" if self.passed else "fail"


def decide(configs: Sequence[ConfigSummary], tol: Tolerances, reference_identical: bool | None = None) -> Verdict:
    """The verdict, decided here only, from the summaries without changing them: each configuration is within
    tolerance when :meth:`ConfigSummary.outside_tolerance` finds no reason; the whole run passes when every one is
    and the reference's own repeated runs were identical."""
    reasons = tuple(cfg.outside_tolerance(tol) for cfg in configs)
    return Verdict(not any(reasons) and reference_identical is not False, reasons)


def _diff_dict(a: dict, b: dict, prefix: str) -> list[str]:
    return [f"{prefix}{key}: {a.get(key, 'absent')} vs {b.get(key, 'absent')}" for key in sorted(set(a) | set(b))
            if a.get(key, "absent") != b.get(key, "absent")]


@dataclass(frozen=True)
class CompareReport(JsonReport):
    """``compare``: record B against record A (:func:`compare_records`): the comparison summarized, the verdict, and
    every setting and environment entry that differs."""
    summary: ConfigSummary
    verdict: Verdict
    a: str
    b: str
    images: int
    raw_images_compared: int
    settings_differences: tuple[str, ...]
    environment_differences: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The summary's keys at the top level with ``verdict``, both paths and the differences."""
        return {**self.summary.to_dict(self.verdict.reasons[0]), "verdict": self.verdict.status, "a": self.a,
                "b": self.b, "images": self.images, "raw_images_compared": self.raw_images_compared,
                "settings_differences": list(self.settings_differences),
                "environment_differences": list(self.environment_differences)}


def compare_records(a, b, tolerances: Tolerances = Tolerances()) -> CompareReport:
    """``compare``: two run records (:mod:`yoloparity.auditing.record`), e.g. from two machines, through the same
    :func:`compare_image` and :func:`summarize` as a live audit; plus every setting and fingerprint entry that differs."""
    from .record import RecordError

    sha_a, sha_b = a.data["model"]["sha256"], b.data["model"]["sha256"]
    if sha_a and sha_b and sha_a != sha_b:
        raise RecordError(b.path, f"records are of different models (sha256 {sha_a[:12]}… vs {sha_b[:12]}…); compare runs "
                                  "of the same model file")
    ia, ib = a.images, b.images
    if set(ia) != set(ib):
        only_a, only_b = sorted(set(ia) - set(ib)), sorted(set(ib) - set(ia))
        raise RecordError(b.path, f"records are of different image sets ({len(only_a)} only in {a.path}, {len(only_b)} only "
                                  f"in {b.path}, e.g. {(only_a or only_b)[0]})")
    head, names = a.spec.head_format, a.spec.names
    conf, nms_iou = a.thresholds.conf, a.thresholds.iou if a.thresholds.iou is not None else head_format_of(head).predict_iou
    comp = ConfigComparison(b.path)
    for key in sorted(ia):
        comp.images.append(compare_image(a.stages(key), b.stages(key), head, conf, nms_iou, tolerances.score_noise,
                                         tolerances.box_noise, branches=(a.spec.head_branch, b.spec.head_branch)))
    summary = summarize(comp, {"record": b.path, "backend": b.data["backend"], "settings": b.data["settings"]}, names)
    return CompareReport(
        summary, decide([summary], tolerances), a.path, b.path, len(ia),
        raw_images_compared=sum(im.raw_max_abs is not None for im in comp.images),
        settings_differences=tuple(_diff_dict(a.data["settings"], b.data["settings"], "settings.")
                                   + _diff_dict(a.data["backend"], b.data["backend"], "backend.")),
        environment_differences=tuple(_diff_dict(a.data["environment"], b.data["environment"], "")))
