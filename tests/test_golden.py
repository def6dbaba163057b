"""Fidelity against reference outputs computed with the YOLOv5 and Ultralytics packages (assets/golden)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import yoloparity
from yoloparity.models.build import build_model
from yoloparity.models.checkpoint import read_checkpoint
from yoloparity.pipeline.letterbox import letterbox, to_input

V5_CASES = [
    ("yolov5n_bus_square", "images/bus.jpg", "square"),
    ("yolov5n_bus_rect", "images/bus.jpg", "rect"),
    ("yolov5n_zidane_square", "images/zidane.jpg", "square"),
    ("yolov5n_zidane_rect", "images/zidane.jpg", "rect"),
    ("yolov5n_000000000139_rect", "coco-val-mini/images/000000000139.jpg", "rect"),
]
ULTRA_CASES = [
    ("yolov8n-random.pt", "yolov8n_bus", "images/bus.jpg"),
    ("yolov8n-random.pt", "yolov8n_zidane", "images/zidane.jpg"),
    ("yolo11n-random.pt", "yolo11n_bus", "images/bus.jpg"),
    ("yolo11n-random.pt", "yolo11n_zidane", "images/zidane.jpg"),
]
BOX_TOL, SCORE_TOL = 2e-3, 1e-4


def _golden(assets, name):
    return np.load(assets / "golden" / f"{name}.npz")


@pytest.mark.parametrize("golden,image,mode", V5_CASES + [(g, i, "square") for _, g, i in ULTRA_CASES])
def test_letterbox_is_bitwise_the_reference_input(assets, golden, image, mode):
    z = _golden(assets, golden)
    padded, lb = letterbox(cv2.imread(str(assets / image)), 640, mode)
    x = to_input(padded)[None]
    assert x.shape == z["input"].shape
    assert np.array_equal(x, z["input"])
    if "ratio" in z.files:
        assert lb.scale == pytest.approx(float(z["ratio"][0]), rel=1e-6)
        assert lb.pad == pytest.approx(tuple(z["pad"].tolist()))
        assert lb.orig_hw == tuple(z["orig_hw"].tolist())


@pytest.mark.parametrize("golden,image,mode", V5_CASES)
def test_yolov5n_raw_output_matches_reference(assets, yolov5n_pt, golden, image, mode):
    z = _golden(assets, golden)
    out = yoloparity.load_model(yolov5n_pt).raw(z["input"])
    ref = z["output"]
    assert out.shape == ref.shape
    assert np.abs(out[..., :4] - ref[..., :4]).max() <= BOX_TOL
    assert np.abs(out[..., 4:] - ref[..., 4:]).max() <= SCORE_TOL


@pytest.mark.parametrize("golden,image,mode", V5_CASES)
def test_yolov5n_detections_match_reference(assets, yolov5n_pt, golden, image, mode):
    z = _golden(assets, golden)
    ref = z["dets"]
    [result] = yoloparity.load_model(yolov5n_pt).predict(str(assets / image), mode=mode, max_det=1000)
    d = result.detections
    assert len(d) == len(ref)
    assert np.array_equal(d.class_ids, ref[:, 5].astype(np.int32))
    assert np.abs(d.boxes - ref[:, :4]).max() <= 0.05
    assert np.abs(d.scores - ref[:, 4]).max() <= 1e-4


def _float64_noise(checkpoint: str, x: np.ndarray) -> np.ndarray:
    """|fp32 - fp64| of our own unfused network: the float32 noise floor of this model on this input."""
    net = build_model(read_checkpoint(checkpoint), fuse=False).net
    with torch.no_grad():
        out32 = net(torch.from_numpy(x)).numpy()
        out64 = net.double()(torch.from_numpy(x).double()).numpy()
    return np.abs(out32 - out64)


@pytest.mark.parametrize("checkpoint,golden,image", ULTRA_CASES)
def test_ultralytics_architectures_raw_output_matches_reference(assets, checkpoint, golden, image):
    """YOLOv8n / YOLO11n architectures (random weights): scores to 1e-4, boxes to 2e-3 px.

    These random-weight networks are badly conditioned on bus.jpg: their float32 noise on the
    largest stride-32 boxes (DFL integral x 32) exceeds 2e-3 px — switching oneDNN off or fusing
    BatchNorm in another order moves our own output by up to 2e-2 px, and the reference's output
    is as far from a float64 evaluation. There the box bound is the larger of 2e-3 and twice the
    float32 noise this test measures on the same input; every score and every zidane.jpg box
    must meet the plain tolerance.
    """
    z = _golden(assets, golden)
    path = str(assets / "models" / checkpoint)
    out = yoloparity.load_model(path).raw(z["input"])
    ref = z["output"]
    assert out.shape == ref.shape == (1, 84, 8400)
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() <= SCORE_TOL
    box_err = np.abs(out[:, :4] - ref[:, :4])
    if "zidane" in golden:
        assert box_err.max() <= BOX_TOL
    else:
        noise = _float64_noise(path, z["input"])[:, :4]
        bound = max(BOX_TOL, 2 * float(noise.max()))
        assert box_err.max() <= bound, f"max box error {box_err.max():.4g} > bound {bound:.4g}"
        assert (box_err <= BOX_TOL).mean() >= 0.99
