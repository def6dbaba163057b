"""ONNX Runtime vs torch, and batch invariance, on the 206 images of coco-val-mini."""

from __future__ import annotations

import numpy as np
import pytest

import yoloparity
from yoloparity.data.sources import read_image
from yoloparity.pipeline.batching import shape_batches

pytestmark = pytest.mark.slow


def _by_class(dets):
    return dets.counts_per_class()


def _match_boxes(a, b):
    """Largest box difference between two detection sets of equal per-class counts (matched by class, then IoU order)."""
    worst = 0.0
    for cid in np.unique(a.class_ids):
        ba, bb = a.boxes[a.class_ids == cid], b.boxes[b.class_ids == cid]
        used = np.zeros(len(bb), bool)
        for box in ba:
            dist = np.abs(bb - box).max(axis=1)
            dist[used] = np.inf
            k = int(dist.argmin())
            used[k] = True
            worst = max(worst, float(dist[k]))
    return worst


@pytest.fixture(scope="module")
def torch_results(yolov5n_pt, coco_images):
    return yoloparity.load_model(yolov5n_pt).predict(coco_images, batch=8)


def test_onnx_export_on_onnxruntime_matches_torch(torch_results, yolov5n_onnx, coco_images):
    ort_results = yoloparity.load_model(yolov5n_onnx, backend="onnxruntime").predict(coco_images, batch=8)
    assert len(ort_results) == len(torch_results) == 206
    worst = 0.0
    for t, o in zip(torch_results, ort_results):
        assert t.path == o.path
        assert _by_class(t.detections) == _by_class(o.detections), t.path
        worst = max(worst, _match_boxes(t.detections, o.detections))
    assert worst <= 0.5
    print(f"\nlargest box difference torch vs onnxruntime over 206 images: {worst:.4f} px")


def _raw_per_image(model, predictor, images, batch):
    """Raw head output of every image, run in shape-bucketed batches of ``batch``."""
    prepared = [predictor.prepare(read_image(p)) for p in images]
    raw = [None] * len(images)
    for chunk in shape_batches([lb.input_hw for _, lb in prepared], batch):
        out = model.raw(np.stack([prepared[k][0] for k in chunk]))
        for k, o in zip(chunk, out):
            raw[k] = o
    return raw


def _same_detections(a, b):
    return all(
        np.array_equal(x.detections.boxes, y.detections.boxes)
        and np.array_equal(x.detections.scores, y.detections.scores)
        and np.array_equal(x.detections.class_ids, y.detections.class_ids)
        for x, y in zip(a, b)
    )


def test_onnxruntime_batch_invariance_is_bitwise(yolov5n_onnx, coco_images):
    """YOLOv5's anchor head on ONNX Runtime: raw outputs bitwise equal at batch 1, 7 and 32 on every other image.
    All 206 images at batch 1, 8 and 32 through the predictor, and the mAP that follows: tests/test_trained.py
    (YOLOv8n, YOLO26n, YOLOv10n on the same kernels)."""
    model = yoloparity.load_model(yolov5n_onnx, backend="onnxruntime")
    predictor = model.predictor()
    half = coco_images[::2]
    raws = {b: _raw_per_image(model, predictor, half, b) for b in (1, 7, 32)}
    for b in (7, 32):
        assert all(np.array_equal(x, y) for x, y in zip(raws[1], raws[b])), f"raw outputs differ between batch 1 and {b}"


def test_torch_batch_invariance(yolov5n_pt, coco_images, torch_results):
    model = yoloparity.load_model(yolov5n_pt)
    # batch 8: torch_results; batch 7, 16 and 32 over all 206 images, byte for byte: tests/test_predict_scale.py
    results = {1: model.predict(coco_images, batch=1)}
    assert _same_detections(results[1], torch_results)
    predictor = model.predictor()
    sample = coco_images[::5]
    base = _raw_per_image(model, predictor, sample, 1)
    worst = max(float(np.abs(x - y).max()) for b in (7, 32) for x, y in zip(base, _raw_per_image(model, predictor, sample, b)))
    print(f"\ntorch CPU: largest raw difference between batch 1 and batch 7/32 on {len(sample)} images: {worst:.3g}")
    assert worst == 0.0  # CPU images run as single-threaded per-image passes (backends/torch_backend.py)
