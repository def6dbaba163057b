"""Models users trained themselves (assets/user: fine-tunes written by Ultralytics' and YOLOv5's own trainers).

The reader builds the network from the stored tensors, so files whose widths differ from what their class count
implies (a fine-tune keeps the pretrained class-branch width) load, and run exactly as the reference runs them.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import yoloparity
from yoloparity.models.build import build_model
from yoloparity.models.checkpoint import named_modules, read_checkpoint

NAMES = ("person", "car", "dog")


@pytest.fixture(scope="module")
def user(assets):
    return assets / "user"


def _golden_cases(user_root):
    index = json.loads((user_root / "golden" / "index.json").read_text())
    return index["files"]


@pytest.mark.parametrize("model", ["v8n-ds3-best.pt", "v8n-ds3-last.pt", "yolo26n-ds3-best.pt", "v5n-ds3-best.pt"])
def test_trainer_files_load_with_their_class_names_and_training_size(user, model):
    m = yoloparity.load_model(str(user / "models" / model))
    try:
        assert m.spec.names == NAMES
        assert m.spec.imgsz == (320, 320)  # the size the trainer was given (train_args / opt)
        assert m.spec.family == ("yolov5" if model.startswith("v5") else "ultralytics")
        assert m.spec.num_anchors == (3 if model.startswith("v5") else 1)
    finally:
        m.close()


def test_detections_equal_the_reference_predictor(user, assets):
    """Every golden file of the reference predictor (YOLO26: its default one-to-many + NMS head and nms=False)."""
    for case in _golden_cases(user):
        z = np.load(user / "golden" / case["npz"])
        head = None
        if case["model"].startswith("yolo26"):
            head = "one2one" if "nms-false" in case["npz"] else "one2many"
        with yoloparity.load_model(str(user / "models" / case["model"]), head=head) as m:
            dets = m.predict(str(user / case["image"]))[0].detections
        assert len(dets) == len(z["scores"]), case["npz"]
        order = np.argsort(-dets.scores, kind="stable")
        # float32 noise of two correct implementations (golden/README.md: up to 1.9e-2 px between CPUs)
        np.testing.assert_allclose(dets.boxes[order], z["boxes_xyxy"], atol=2e-2, err_msg=case["npz"])
        np.testing.assert_allclose(dets.scores[order], z["scores"], atol=1e-4, err_msg=case["npz"])
        assert dets.class_ids[order].tolist() == z["cls"].astype(int).tolist()


@pytest.mark.unit
def test_yolov5_7_file_is_recognised_by_its_anchors_not_its_class_name(user):
    ckpt = read_checkpoint(user / "models" / "v5n-ds3-best.pt")
    assert ckpt.model._qualname == "yolov5.models.yolo.DetectionModel"  # the name Ultralytics uses too
    assert ckpt.family == "yolov5"


def _refit_classes(ckpt, nc: int, names: dict) -> None:
    """Make ``ckpt`` what a fine-tune to ``nc`` classes looks like: only the last class convolutions change."""
    torch.manual_seed(0)
    for name, stub in named_modules(ckpt.model).items():
        if name.startswith("model.22.cv3.") and name.count(".") == 4 and name.endswith(".2"):
            width = stub._parameters["weight"].shape[1]
            stub._parameters["weight"] = torch.randn(nc, width, 1, 1) * 0.01
            stub._parameters["bias"] = torch.full((nc,), -4.0)
    ckpt.model.yaml["nc"] = nc
    ckpt.model.names = names


def test_reader_builds_widths_from_tensors_not_from_nc_or_scale(assets):
    """A synthetic fine-tune: YOLOv8n's class branch stays 80 wide (what nc=80 implied) beside a 1-class last conv,
    and the yaml names the wrong scale; the network is built from the tensors and computes the same boxes."""
    original = read_checkpoint(assets / "models" / "yolov8n-random.pt")
    tuned = copy.deepcopy(original)
    _refit_classes(tuned, 1, {0: "thing"})
    tuned.model.yaml["scale"] = "s"  # the yaml's rule would give every layer twice the width
    built, reference = build_model(tuned), build_model(original)
    head = built.net.model[-1]
    assert built.spec.names == ("thing",) and head.nc == 1
    assert head.cv3[0][0].conv.out_channels == 80  # max(64, min(nc, 100)) would be 64
    x = torch.rand(1, 3, 320, 256)
    out, ref = built.net(x), reference.net(x)
    assert out.shape == (1, 4 + 1, ref.shape[2])
    torch.testing.assert_close(out[:, :4], ref[:, :4])  # the box branch and backbone are untouched
