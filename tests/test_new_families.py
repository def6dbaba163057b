"""The newer Ultralytics families everywhere the project runs: YOLO12 (area attention, A2C2f), and the end-to-end
(NMS-free) YOLOv10 and YOLO26 whose one-to-one head is ranked by our deterministic top-k.

Architecture fidelity (float64 ≤ 1e-9, float32 within noise, the reference's detections) is in test_golden.py;
here: batch invariance and the exported file on ONNX Runtime and OpenVINO against torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import yoloparity

FAMILIES = ("yolo12n", "yolov10n", "yolo26n")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, assets, tmp_path_factory) -> tuple[str, str]:
    """(checkpoint, its dynamic ONNX export)."""
    pt = str(assets / "models" / f"{request.param}-random.pt")
    return pt, yoloparity.export(pt, str(tmp_path_factory.mktemp(request.param) / f"{request.param}.onnx"), dynamic=True)


def _same(a, b) -> bool:
    return all(np.array_equal(x.detections.boxes, y.detections.boxes) and np.array_equal(x.detections.scores, y.detections.scores)
               and np.array_equal(x.detections.class_ids, y.detections.class_ids) for x, y in zip(a, b))


def test_batch_invariance_on_onnxruntime_and_torch(family, coco_images):
    """Each image's feature maps and top-k are its own: batch 1, 7 and 32 give bitwise the same detections (16
    images of several rect shape buckets; at 32 every bucket is one batch)."""
    pt, onnx_file = family
    images = coco_images[:16]
    ort = yoloparity.load_model(onnx_file)
    by_batch = {b: ort.predict(images, batch=b, conf=0.5) for b in (1, 7, 32)}
    assert _same(by_batch[1], by_batch[7]) and _same(by_batch[1], by_batch[32])
    torch_model = yoloparity.load_model(pt)
    assert _same(torch_model.predict(images, batch=1, conf=0.5), torch_model.predict(images, batch=32, conf=0.5))


def test_export_runs_like_torch_on_onnxruntime_and_openvino(family, assets):
    """The export keeps the raw head (for end-to-end heads: before the top-k), so every backend goes through the
    same NumPy top-k or NMS; detections agree with torch rank by rank within both runs' float32 distance to the
    float64 truth, except neighbouring ranks whose scores lie within that distance (near-tie swaps)."""
    pt, onnx_file = family
    arch = pt.rsplit("/", 1)[-1].replace("-random.pt", "")
    reference_model = yoloparity.load_model(pt)
    for backend in ("onnxruntime", "openvino"):
        model = yoloparity.load_model(onnx_file, backend=backend)
        assert model.spec.head_format == reference_model.spec.head_format and model.spec.names == reference_model.spec.names
        for name in ("bus", "zidane"):
            x = np.load(assets / "golden" / f"{arch}_{name}.npz")["input"]  # bitwise our square letterbox
            fp64 = np.load(assets / "golden" / "fp64" / f"{arch}_{name}.npz")
            truth = fp64["pre_topk64"] if "pre_topk64" in fp64.files else fp64["output64"]
            err_a, err_b = np.abs(reference_model.raw(x) - truth), np.abs(model.raw(x) - truth)
            score_bound = float(err_a[:, 4:].max() + err_b[:, 4:].max())
            box_bound = float(err_a[:, :4].max() + err_b[:, :4].max())
            image = str(assets / "images" / f"{name}.jpg")
            [a], [b] = reference_model.predict(image, mode="square"), model.predict(image, mode="square")
            a, b = a.detections, b.detections
            assert len(a) == len(b), (backend, name)
            box_tol = 2 * box_bound / _square_scale(image)
            same = (a.class_ids == b.class_ids) & (np.abs(a.boxes - b.boxes).max(axis=1, initial=0.0) <= box_tol)
            assert np.abs(a.scores - b.scores)[same].max(initial=0.0) <= score_bound, (backend, name)
            gaps = np.abs(np.diff(a.scores))
            differ = np.flatnonzero(~same)
            assert all(gaps[max(k - 1, 0):k + 1].min() <= 2 * score_bound for k in differ), (backend, name, differ)


def _square_scale(image: str) -> float:
    """The square letterbox's resize ratio of ``image`` (input pixels per image pixel)."""
    import cv2

    h, w = cv2.imread(image).shape[:2]
    return 640 / max(h, w)


@pytest.mark.unit
def test_end_to_end_topk_is_a_total_order():
    """Equal scores rank by anchor, then class, whatever order they arrive in; the top-k keeps the reference's two
    stages (best anchors, then their best (anchor, class) pairs)."""
    from yoloparity.heads.topk import topk_candidates

    raw = np.zeros((4 + 3, 6), np.float32)
    raw[:4] = np.arange(24, dtype=np.float32).reshape(4, 6)  # box coordinates tell the anchors apart
    raw[4:, :] = [[0.9, 0.5, 0.9, 0.1, 0.5, 0.2],  # class 0
                  [0.8, 0.9, 0.1, 0.1, 0.5, 0.2],  # class 1
                  [0.1, 0.1, 0.1, 0.1, 0.5, 0.9]]  # class 2
    c = topk_candidates(raw, conf=0.25, k=4)
    # best anchors (max score 0.9: anchors 0, 1, 2, 5 in index order); pairs by score, anchor, class
    assert c.scores.tolist() == pytest.approx([0.9, 0.9, 0.9, 0.9]) and len(c) == 4
    assert [(int(b[0]), int(k)) for b, k in zip(c.boxes, c.class_ids)] == [(0, 0), (1, 1), (2, 0), (5, 2)]
    shuffled = raw[:, ::-1].copy()  # the same scores at other anchor indices: ties resolve by the new indices
    d = topk_candidates(shuffled, conf=0.25, k=4)
    # new anchor j is old anchor 5 - j (its box x1 is 5 - j): the ties now resolve to new anchors 0, 3, 4, 5
    assert [(int(b[0]), int(k)) for b, k in zip(d.boxes, d.class_ids)] == [(5, 2), (2, 0), (1, 1), (0, 0)]
    assert len(topk_candidates(raw, conf=0.85, k=4, classes=[1])) == 1


def test_an_unknown_module_names_itself_and_the_ultralytics_version(capsys, assets, monkeypatch):
    from yoloparity.backends import torch_backend
    from yoloparity.cli import main
    from yoloparity.models import build

    monkeypatch.setattr(build, "_KNOWN", build._KNOWN - {"SCDown"})  # as if SCDown had not been written yet
    torch_backend._load.cache_clear()
    try:
        code = main(["predict", str(assets / "models" / "yolov10n-random.pt"), str(assets / "images" / "bus.jpg"),
                     "--quiet"])
    finally:
        torch_backend._load.cache_clear()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "module 'SCDown' (checkpoint of Ultralytics 8.4.190), which yoloparity does not implement" in err


def test_one2many_head_runs_nms_and_the_audit_names_the_head(capsys, tmp_path, assets):
    """YOLO26 checkpoints carry both heads: --head one2many decodes the NMS head (xywh, NMS applied); an audit of
    one2one vs one2many says "head" as the first divergence instead of reporting numerics; records carry the choice."""
    import json

    from yoloparity.cli import main

    pt = str(assets / "models" / "yolo26n-random.pt")
    bus = str(assets / "images" / "bus.jpg")
    one2one, one2many = yoloparity.load_model(pt), yoloparity.load_model(pt, head_branch="one2many")
    assert (one2one.spec.head_format, one2one.spec.head_branch) == ("e2e", "one2one")
    assert (one2many.spec.head_format, one2many.spec.head_branch) == ("v8", "one2many")
    assert one2one.spec.writer == "Ultralytics 8.4.190"
    [many] = one2many.predict(bus, mode="square")
    d = many.detections
    from yoloparity.auditing.match import box_iou

    for cls in np.unique(d.class_ids):  # NMS ran: no two kept boxes of a class overlap past the IoU threshold
        boxes = d.boxes[d.class_ids == cls]
        iou = box_iou(boxes, boxes) - np.eye(len(boxes))
        assert iou.max(initial=0.0) <= 0.7 + 1e-6
    with pytest.raises(yoloparity.YoloParityError, match="no one-to-one"):
        yoloparity.load_model(str(assets / "models" / "yolov8n-random.pt"), head_branch="one2one")
    out = tmp_path / "audit.json"
    code = main(["audit", pt, bus, "--config", "batch=1", "--config", "head=one2many", "--quiet", "--json", str(out)])
    [cfg] = json.loads(out.read_text())["configs"]
    assert code == 1 and cfg["first_divergence"] == {"head": 1} and cfg["label"].endswith("one2many")
    assert "one2one vs one2many" in cfg["localization"][0]["detail"]
    record = tmp_path / "rec.json"
    assert main(["predict", pt, bus, "--save-record", str(record), "--quiet"]) == 0
    spec = json.loads(record.read_text())["model"]["spec"]
    assert spec["head_branch"] == "one2one" and spec["writer"] == "Ultralytics 8.4.190"
    capsys.readouterr()


def _e2e_stages(raw: np.ndarray):
    from yoloparity.auditing.capture import ImageStages
    from yoloparity.pipeline.postprocess import postprocess_stages
    from yoloparity.types import Letterbox, Thresholds

    lb = Letterbox((640, 640), (640, 640), 1.0, (0.0, 0.0), (0, 0, 0, 0))
    cands, kept, dets = postprocess_stages(raw, "e2e", lb, Thresholds(conf=0.25))
    return ImageStages("synthetic.jpg", "same", None, lb, raw, cands, kept, dets)


@pytest.mark.unit
def test_audit_calls_a_top_k_boundary_swap_borderline_and_a_far_one_real():
    """The one-to-one head's top-k has a rank boundary as NMS has an IoU threshold: a detection that enters or
    leaves the 300 kept by a near-tie is borderline; one far from the boundary is real."""
    from yoloparity.auditing.compare import compare_image

    n = 302
    raw = np.zeros((5, n), np.float32)
    raw[0] = np.arange(n) * 2.0  # disjoint one-pixel boxes, one per anchor
    raw[1] = 0.0
    raw[2] = raw[0] + 1.0
    raw[3] = 1.0
    raw[4] = np.linspace(0.9, 0.6, n, dtype=np.float32)
    raw[4, 300] = raw[4, 299] - 1e-7  # just outside the top 300 in the reference run
    other = raw.copy()
    other[4, 300] = raw[4, 299] + 1e-7  # just inside in the other run: anchors 299 and 300 trade places
    result = compare_image(_e2e_stages(raw), _e2e_stages(other), "e2e", 0.25, 0.7)
    assert [d.kind for d in result.differences] == ["borderline", "borderline"]
    assert "top-300 rank boundary" in result.differences[0].reason and result.stage == "top-k"
    far = raw.copy()
    far[4, 10] = 0.1  # a detection high in the ranking disappears: not a near-tie
    result = compare_image(_e2e_stages(raw), _e2e_stages(far), "e2e", 0.25, 0.7)
    assert "real" in [d.kind for d in result.differences]


def _export_with_topk_in_graph(pt: str, out: str) -> str:
    """An end-to-end export as other exporters write it: the one-to-one head followed by an in-graph torch.topk
    (two stages, 300 detections), output (1, 300, 6), with Ultralytics-style metadata."""
    import torch

    from yoloparity.backends.torch_backend import load_built

    built = load_built(pt)

    class WithTopK(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            y = self.net(x).transpose(1, 2)  # (1, A, 84)
            boxes, scores = y[..., :4], y[..., 4:]
            nc = scores.shape[-1]
            index = scores.amax(-1).topk(300)[1]  # (1, 300) best anchors
            boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))
            scores = scores.gather(1, index[..., None].expand(-1, -1, nc))
            top, flat = scores.flatten(1).topk(300)
            picked = boxes.gather(1, (flat // nc)[..., None].expand(-1, -1, 4))
            return torch.cat((picked, top[..., None], (flat % nc)[..., None].float()), -1)

    torch.onnx.export(WithTopK(built.net).eval(), (torch.zeros(1, 3, 640, 640),), out, input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
    import onnx

    model = onnx.load(out)
    for key, value in (("names", repr(dict(enumerate(built.spec.names)))), ("stride", "32"), ("imgsz", "[640, 640]"),
                       ("task", "detect")):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, out)
    return out


def test_a_third_party_export_with_its_own_topk_is_read_as_it_is(tmp_path, assets):
    """An (N, 300, 6) file is read as detections (no second top-k, no NMS), with a note that the ranking of
    near-ties is its exporter's; its detections equal ours up to near-tie swaps."""
    import warnings

    pt = str(assets / "models" / "yolo26n-random.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = _export_with_topk_in_graph(pt, str(tmp_path / "yolo26n-e2e.onnx"))
    theirs = yoloparity.load_model(path)
    assert theirs.spec.head_format == "dets" and any("exporter's own top-k" in n for n in theirs.notes)
    images = [str(assets / "images" / n) for n in ("bus.jpg", "zidane.jpg")]
    ours = yoloparity.load_model(pt).predict(images, mode="square")
    for a, b in zip(ours, theirs.predict(images, mode="square", batch=1)):  # a static batch of 1
        assert len(a.detections) == len(b.detections)
        agree = (a.detections.class_ids == b.detections.class_ids) & (
            np.abs(a.detections.boxes - b.detections.boxes).max(axis=1, initial=0.0) <= 0.5)
        assert agree.mean() >= 0.9 and np.abs(a.detections.scores - b.detections.scores).max() < 2e-3
    [few] = theirs.predict(images[:1], mode="square", conf=0.9, max_det=5, classes=[0, 5])
    assert len(few.detections) <= 5 and set(few.detections.class_ids.tolist()) <= {0, 5}
    assert (few.detections.scores > 0.9).all()
