"""Shared post-processing, types and sources, on real images and outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import yoloparity
from yoloparity.data.sources import resolve_source
from yoloparity.heads import Candidates
from yoloparity.heads.decode import decode_rows
from yoloparity.heads.nms import nms
from yoloparity.pipeline.letterbox import input_shape
from yoloparity.types import Detections


@pytest.mark.unit
def test_detections_validate_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"boxes must have shape \(n, 4\)"):
        Detections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="float32"):
        Detections(np.zeros((2, 4)), np.zeros(2, np.float32), np.zeros(2, np.int32))
    d = Detections(np.arange(8, dtype=np.float32).reshape(2, 4), np.array([0.9, 0.1], np.float32), np.array([3, 1], np.int32))
    kept = d[d.scores > 0.5]
    assert len(kept) == 1 and kept.class_ids.tolist() == [3]
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError):
        d.boxes[0, 0] = 1.0  # frozen arrays


@pytest.mark.unit
def test_nms_breaks_score_ties_by_index_whatever_the_input_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.8, 0.8, 0.5, 0.8], np.float32)
    cands = Candidates(boxes, scores, np.zeros(4, np.int32))
    assert nms(cands, 0.45).tolist() == [0, 2]
    # same boxes, another order: the earliest of the tied boxes wins again
    perm = np.array([3, 2, 1, 0])
    cands2 = Candidates(boxes[perm], scores[perm], np.zeros(4, np.int32))
    assert nms(cands2, 0.45).tolist() == [0, 1]


@pytest.mark.unit
def test_nms_keeps_classes_apart_unless_agnostic():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    cands = Candidates(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int32))
    assert nms(cands, 0.5).tolist() == [0, 1]
    assert nms(cands, 0.5, agnostic=True).tolist() == [0]
    assert nms(cands, 0.5, max_det=1).tolist() == [0]


def test_multi_label_keeps_every_class_above_threshold(assets, yolov5n_pt):
    z = np.load(assets / "golden" / "yolov5n_bus_square.npz")
    raw = z["output"][0]
    single = decode_rows(raw, True, 0.01)
    multi = decode_rows(raw, True, 0.01, multi_label=True)
    assert len(multi) > len(single)
    scores = raw[:, 5:] * raw[:, 4:5]
    assert len(multi) == int(((scores > 0.01) & (raw[:, 4:5] > 0.01)).sum())
    only_people = decode_rows(raw, True, 0.01, classes=[0])
    assert set(only_people.class_ids.tolist()) == {0}


@pytest.mark.unit
def test_rect_shapes_are_the_smallest_stride_multiple():
    assert input_shape((1080, 810), (640, 640), "rect") == (640, 480)
    assert input_shape((720, 1280), (640, 640), "rect") == (384, 640)
    assert input_shape((426, 640), (640, 640), "rect") == (448, 640)
    assert input_shape((426, 640), (640, 640), "square") == (640, 640)


def test_sources_folder_glob_list_and_arrays(assets):
    folder = resolve_source(str(assets / "images"))
    assert [i.path.rsplit("/", 1)[1] for i in folder] == ["bus.jpg", "zidane.jpg"]
    glob_items = resolve_source(str(assets / "images" / "*.jpg"))
    assert [i.path for i in glob_items] == [i.path for i in folder]
    image = cv2.imread(str(assets / "images" / "bus.jpg"))
    mixed = resolve_source([str(assets / "images" / "zidane.jpg"), image])
    assert [i.path.rsplit("/", 1)[-1] for i in mixed] == ["zidane.jpg", "array1"]
    assert np.array_equal(mixed[1].load(), image)


def test_predict_on_arrays_equals_predict_on_files(assets, yolov5n_pt):
    model = yoloparity.load_model(yolov5n_pt)
    paths = [str(assets / "images" / n) for n in ("zidane.jpg", "bus.jpg")]
    from_files = model.predict(paths, batch=4)
    from_arrays = model.predict([cv2.imread(p) for p in paths], batch=4)
    assert [r.path.rsplit("/", 1)[-1] for r in from_files] == ["zidane.jpg", "bus.jpg"]
    for a, b in zip(from_files, from_arrays):
        assert np.array_equal(a.detections.boxes, b.detections.boxes)
    expected = [len(_golden_dets(assets, name)) for name in ("zidane", "bus")]  # the reference's, not ours
    assert [len(r.detections) for r in from_files] == expected


def _golden_dets(assets, image: str) -> np.ndarray:
    """The reference's detections (x1, y1, x2, y2, score, class) at conf 0.25, rect, from golden/."""
    return np.load(assets / "golden" / f"yolov5n_{image}_rect.npz")["dets"]


def test_predict_class_filter_and_thresholds(assets, yolov5n_pt):
    model = yoloparity.load_model(yolov5n_pt)
    bus = str(assets / "images" / "bus.jpg")
    golden = _golden_dets(assets, "bus")
    [people] = model.predict(bus, classes=[0])
    assert set(people.detections.class_ids.tolist()) == {0} and len(people.detections) == int((golden[:, 5] == 0).sum())
    [strict] = model.predict(bus, conf=0.8)
    assert (strict.detections.scores > 0.8).all() and len(strict.detections) == int((golden[:, 4] > 0.8).sum())
    with pytest.raises(ValueError, match="outside 0..79"):
        model.predict(bus, classes=[80])


def test_video_frames_are_predicted_in_order(tmp_path, assets, yolov5n_pt):
    frame = cv2.resize(cv2.imread(str(assets / "images" / "bus.jpg")), (320, 416))
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 416))
    for k in range(4):
        writer.write(np.roll(frame, 20 * k, axis=1))
    writer.release()
    results = yoloparity.load_model(yolov5n_pt).predict(path, batch=3)
    assert [r.path.rsplit("#", 1)[1] for r in results] == [f"frame={k}" for k in range(4)]
    assert all(r.ok and len(r.detections) >= 1 for r in results)
    assert results[0].letterbox.orig_hw == (416, 320)


@pytest.mark.unit
def test_official_name_is_downloaded_with_progress_into_the_cache(monkeypatch, tmp_path):
    from yoloparity.models import hub

    served = tmp_path / "release" / "yolov8s.pt"
    served.parent.mkdir()
    served.write_bytes(b"x" * 300_000)
    monkeypatch.setenv("YOLOPARITY_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("YOLOPARITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(hub.OFFICIAL, "yolov8s.pt", served.as_uri())
    seen: list[tuple[int, int]] = []
    path = hub.resolve_model_path("yolov8s.pt", progress=lambda n, total: seen.append((n, total)))
    assert path == str(tmp_path / "cache" / "yolov8s.pt") and open(path, "rb").read() == served.read_bytes()
    assert sum(n for n, _ in seen) == 300_000 and {t for _, t in seen} == {300_000} and len(seen) > 1
    assert hub.resolve_model_path("yolov8s.pt") == path  # found in the cache the second time, no download


@pytest.mark.unit
def test_official_name_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    from yoloparity.models import hub

    monkeypatch.setenv("YOLOPARITY_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("YOLOPARITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(hub.OFFICIAL, "yolov8s.pt", "http://127.0.0.1:9/yolov8s.pt")
    with pytest.raises(yoloparity.YoloParityError) as err:
        yoloparity.load_model("yolov8s.pt")
    message = str(err.value)
    assert "yolov8s.pt" in message and str(tmp_path / "cache" / "yolov8s.pt") in message
    assert not (tmp_path / "cache" / "yolov8s.pt").exists()


def test_official_name_found_in_assets(yolov5n_pt):
    assert yoloparity.load_model("yolov5n.pt").spec.sha256 == "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"


def _one_at_a_time(boxes, scores, iou, max_det):
    """The textbook greedy NMS, one kept box at a time: the oracle for the blocked implementation."""
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive, keep = list(range(len(order))), []
    while alive and len(keep) < max_det:
        i, alive = alive[0], alive[1:]
        keep.append(i)
        survivors = []
        for j in alive:
            w = max(np.float32(0), min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(np.float32(0), min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = np.float32(w * h)
            with np.errstate(invalid="ignore"):
                overlap = inter / np.float32(areas[i] + areas[j] - inter)
            if not float(overlap) > iou:
                survivors.append(j)
        alive = survivors
    return order[keep]


@pytest.mark.unit
def test_blocked_nms_equals_one_box_at_a_time_greedy():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(1, 700))  # spans several 256-candidate blocks
        xy = rng.uniform(0, 120, (n, 2)).astype(np.float32)
        wh = rng.uniform(0, 40, (n, 2)).astype(np.float32)
        wh[:: 11] = 0  # degenerate boxes: NaN IoU never suppresses
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.choice(np.float32([0.2, 0.4, 0.6, 0.8]), n)  # many ties
        cands = Candidates(boxes, scores, np.zeros(n, np.int32))
        max_det = int(rng.integers(1, 400))
        for thr in (0.3, 0.6):
            assert nms(cands, thr, max_det=max_det, agnostic=True).tolist() == _one_at_a_time(boxes, scores, thr, max_det).tolist()


@pytest.mark.unit
def test_env_fingerprint_names_what_changes_numerics(capsys):
    import json

    from yoloparity.cli import main

    assert main(["env", "--json"]) == 0
    fp = json.loads(capsys.readouterr().out)
    for key in ("os", "cpu", "cpu.isa", "python", "numpy", "torch", "torch.threads", "onnxruntime.providers",
                "cudnn.deterministic", "tf32.matmul", "env.OMP_NUM_THREADS", "env.CUBLAS_WORKSPACE_CONFIG"):
        assert key in fp and isinstance(fp[key], str)
    assert "CPUExecutionProvider" in fp["onnxruntime.providers"]
    assert fp["cpu.count"] == str(__import__("os").cpu_count())
