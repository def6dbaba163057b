"""COCO box evaluation with the real evaluators: faster-coco-eval (default) or pycocotools.

Both run the official COCOeval protocol on the same ground truth and results; we only read their
output arrays. Precision and recall "at the best-F1 confidence" are read off the evaluator's own
precision/recall/score curves at IoU 0.5 (area all, 100 detections): for every confidence on a
1001-point grid, each class's recall is the largest recall reached with scores at or above it
and its precision the evaluator's interpolated precision there; the confidence with the best F1
of the class-mean precision and recall is reported.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError

EVALUATORS = ("faster-coco-eval", "pycocotools")
_STAT_NAMES = ("mAP50_95", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large", "AR1", "AR10", "AR100",
               "AR_small", "AR_medium", "AR_large")


@dataclass(frozen=True)
class Metrics:
    """The COCO summary numbers (mAP50-95, mAP50, mAP75, by size, recall) with the evaluator that computed them."""
    mAP50_95: float
    mAP50: float
    mAP75: float
    mAP_small: float
    mAP_medium: float
    mAP_large: float
    AR1: float
    AR10: float
    AR100: float
    AR_small: float
    AR_medium: float
    AR_large: float
    precision: float
    recall: float
    f1: float
    best_conf: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluator: str = ""
    images: int = 0
    detections: int = 0
    eval_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON values."""
        return asdict(self)


def _require_pycocotools() -> None:
    try:
        import pycocotools  # noqa: F401
    except ImportError:

        raise BackendUnavailableError(None, "--evaluator pycocotools needs the package pycocotools "
                                            "(pip install \"yoloparity[pycocotools]\"), or use the default faster-coco-eval") from None


def _load_gt(gt: dict, evaluator: str):
    if evaluator == "pycocotools":
        _require_pycocotools()
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        return coco
    from faster_coco_eval import COCO

    return COCO(copy.deepcopy(gt))


def _run(gt: dict, results: list[dict], evaluator: str):
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _load_gt(gt, evaluator)
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        if evaluator == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(coco_gt, coco_dt, "bbox")
        else:
            from faster_coco_eval import COCOeval_faster

            ev = COCOeval_faster(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = sorted(img["id"] for img in gt["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def best_f1(precision: np.ndarray, scores: np.ndarray, rec_thrs: np.ndarray) -> tuple[float, float, float, float]:
    """(precision, recall, f1, confidence) at the confidence maximizing F1; inputs are (R, K) at IoU 0.5."""
    valid = precision[0] > -1  # classes with ground truth
    if not valid.any():
        return 0.0, 0.0, 0.0, 0.0
    prec, sc = precision[:, valid], scores[:, valid]
    grid = np.linspace(0, 1, 1001)
    reached = (sc[None, :, :] >= grid[:, None, None]) & (prec[None, :, :] > 0)  # (C, R, K)
    any_reached = reached.any(axis=1)
    last = (reached.shape[1] - 1) - np.argmax(reached[:, ::-1, :], axis=1)  # highest recall index reached
    rec = np.where(any_reached, rec_thrs[last], 0.0)
    pr = np.where(any_reached, np.take_along_axis(prec[None].repeat(len(grid), 0), last[:, None, :], 1)[:, 0], 0.0)
    p_mean, r_mean = pr.mean(axis=1), rec.mean(axis=1)
    f1 = 2 * p_mean * r_mean / np.maximum(p_mean + r_mean, 1e-16)
    i = int(np.argmax(f1))
    return float(p_mean[i]), float(r_mean[i]), float(f1[i]), float(grid[i])


def coco_evaluate(gt: dict, results: list[dict], names: tuple[str, ...], category_ids: tuple[int, ...],
                  evaluator: str = "faster-coco-eval") -> Metrics:
    """Evaluate COCO-format ``results`` against ``gt``; per-class figures keyed by class name."""
    import time

    start = time.perf_counter()
    if not results:
        zeros = dict.fromkeys(_STAT_NAMES, 0.0)
        return Metrics(**zeros, precision=0.0, recall=0.0, f1=0.0, best_conf=0.0, evaluator=evaluator,
                       images=len(gt["images"]), detections=0, eval_seconds=time.perf_counter() - start)
    ev = _run(gt, results, evaluator)
    stats = [float(v) for v in ev.stats[:12]]
    precision = np.asarray(ev.eval["precision"])  # (T, R, K, A, M)
    scores = np.asarray(ev.eval["scores"])
    cat_order = list(ev.params.catIds)
    per_class: dict[str, dict[str, float]] = {}
    counts: dict[int, int] = {}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    for name, cid in zip(names, category_ids):
        if cid not in cat_order or counts.get(cid, 0) == 0:
            continue
        k = cat_order.index(cid)
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_class[name] = {
            "AP50_95": float(p[p > -1].mean()) if (p > -1).any() else 0.0,
            "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0,
            "instances": counts[cid],
        }
    p_best, r_best, f1, conf = best_f1(precision[0, :, :, 0, -1], scores[0, :, :, 0, -1], np.asarray(ev.params.recThrs))
    return Metrics(**dict(zip(_STAT_NAMES, stats)), precision=p_best, recall=r_best, f1=f1, best_conf=conf,
                   per_class=per_class, evaluator=evaluator, images=len(gt["images"]), detections=len(results),
                   eval_seconds=time.perf_counter() - start)
