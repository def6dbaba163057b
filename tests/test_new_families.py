"""The newer Ultralytics families everywhere the project runs: YOLO12 (area attention, A2C2f).

Architecture fidelity (float64 ≤ 1e-9, float32 within noise, the reference's detections) is in test_golden.py;
here: batch invariance and the exported file on ONNX Runtime and OpenVINO against torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import yoloparity
from yoloparity.auditing.match import match


@pytest.fixture(scope="module")
def yolo12n(assets) -> str:
    return str(assets / "models" / "yolo12n-random.pt")


@pytest.fixture(scope="module")
def yolo12n_onnx(yolo12n, tmp_path_factory) -> str:
    return yoloparity.export(yolo12n, str(tmp_path_factory.mktemp("y12") / "yolo12n.onnx"), dynamic=True)


def _same(a, b) -> bool:
    return all(np.array_equal(x.detections.boxes, y.detections.boxes) and np.array_equal(x.detections.scores, y.detections.scores)
               and np.array_equal(x.detections.class_ids, y.detections.class_ids) for x, y in zip(a, b))


def test_yolo12_is_batch_invariant_on_onnxruntime_and_torch(yolo12n, yolo12n_onnx, coco_images):
    """Area attention splits each image's own feature map, never the batch: batch 1, 7 and 32 give bitwise the same
    detections (ORT CPU raw outputs bitwise too)."""
    images = coco_images[:32]
    ort = yoloparity.load_model(yolo12n_onnx)
    by_batch = {b: ort.predict(images, batch=b, conf=0.5) for b in (1, 7, 32)}
    assert _same(by_batch[1], by_batch[7]) and _same(by_batch[1], by_batch[32])
    torch_model = yoloparity.load_model(yolo12n)
    assert _same(torch_model.predict(images, batch=1, conf=0.5), torch_model.predict(images, batch=32, conf=0.5))


def test_yolo12_export_runs_like_torch_on_onnxruntime_and_openvino(yolo12n, yolo12n_onnx, assets):
    images = [str(assets / "images" / n) for n in ("bus.jpg", "zidane.jpg")]
    reference = yoloparity.load_model(yolo12n).predict(images, mode="square")
    for backend in ("onnxruntime", "openvino"):
        model = yoloparity.load_model(yolo12n_onnx, backend=backend)
        assert model.spec.names == yoloparity.load_model(yolo12n).spec.names
        for ref, got in zip(reference, model.predict(images, mode="square")):
            # the same detections up to float32 noise: matched one to one by class and IoU, nearly identical boxes;
            # at most a near-tie pair at the 300-detection cut may differ
            m = match(ref.detections, got.detections)
            assert len(m.only_a) + len(m.only_b) <= 2, (backend, ref.path, m.only_a, m.only_b)
            assert len(m.pairs) >= len(ref.detections) - 1 and min(iou for _, _, iou in m.pairs) > 0.99
            deltas = [abs(float(ref.detections.scores[i] - got.detections.scores[j])) for i, j, _ in m.pairs]
            assert max(deltas) < 2e-3, backend


@pytest.mark.parametrize("name,says", [("yolov10n", "module 'SCDown'"), ("yolo26n", "end-to-end (NMS-free, top-k) Detect")])
def test_a_family_not_built_yet_names_itself_and_the_ultralytics_version(capsys, assets, name, says):
    from yoloparity.cli import main

    code = main(["predict", str(assets / "models" / f"{name}-random.pt"), str(assets / "images" / "bus.jpg"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err and "(checkpoint of Ultralytics 8.4.190)" in err
