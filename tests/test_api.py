"""The public functions (val, audit, compare, quantize, bench beside load_model/predict/export) and the small
shared modules every command goes through (atomic writes, detection converters, shape buckets)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import yoloparity
from yoloparity.types import Detections


@pytest.fixture()
def mini_data(tmp_path, assets):
    """Eight labelled coco-val-mini images as their own data.yaml."""
    from conftest import subset_dataset

    return subset_dataset(assets, tmp_path / "mini", 8)


def test_val_function_leaves_no_shard_folder_behind(tmp_path, monkeypatch, yolov5n_pt, mini_data):
    monkeypatch.chdir(tmp_path)
    report = yoloparity.val(yolov5n_pt, mini_data, batch=4)
    assert 0 < report.metrics.mAP50_95 < 1 and len(report.records) == 8
    assert report.run_dir is None and not (tmp_path / "runs").exists()  # one process: a temporary folder, removed
    kept = tmp_path / "kept"
    again = yoloparity.val(yolov5n_pt, mini_data, batch=8, run_dir=str(kept))
    assert again.run_dir == str(kept) and any(kept.glob("shard-*.jsonl"))
    assert again.metrics.mAP50_95 == report.metrics.mAP50_95  # batch 4 or 8: the same predictions


def test_audit_and_compare_functions(tmp_path, yolov5n_pt, yolov5n_onnx, assets):
    image = str(assets / "images" / "bus.jpg")
    result = yoloparity.audit(yolov5n_pt, image, ["batch=1", "mode=square"])
    report = result.report
    assert result.verdict == report.verdict.status == "fail" and report.configs[0].first_divergence == {"preprocessing": 1}
    assert report.verdict.reasons[0] and result.gallery and result.gallery[0].file == image
    assert json.loads(report.to_json())["configs"][0]["outside_tolerance"] == list(report.verdict.reasons[0])
    with pytest.raises(ValueError, match="at least one --config"):
        yoloparity.audit(yolov5n_pt, image, ["batch=1"])
    from yoloparity.cli import main

    records = {}
    for tag, extra in (("a", []), ("b", ["--imgsz", "320"])):
        records[tag] = str(tmp_path / f"{tag}.json")
        assert main(["predict", yolov5n_onnx, image, "--save-record", records[tag], "--quiet",
                     "--run-dir", str(tmp_path / f"run-{tag}"), *extra]) == 0
    backend = json.loads(open(records["a"]).read())["backend"]  # what the run computed in, read from the runtime
    assert backend["precision"] == "fp32" and backend["computes"]["computes"] == "fp32"
    assert backend["computes"]["source"].startswith("ONNX Runtime")
    same = yoloparity.compare(records["a"], records["a"])
    assert same.verdict.passed and same.summary.real == 0 and same.settings_differences == ()
    other = yoloparity.compare(records["a"], records["b"]).to_dict()
    assert other["verdict"] == "fail" and other["outside_tolerance"]
    assert any(d.startswith("settings.imgsz") for d in other["settings_differences"])
    assert other["first_divergence"] == {"preprocessing": 1}


def test_load_model_picks_the_backend_from_the_suffix(tmp_path, yolov5n_pt, yolov5n_onnx):
    assert yoloparity.load_model(yolov5n_pt).backend.name == "torch"
    assert yoloparity.load_model(yolov5n_onnx).backend.name == "onnxruntime"
    with pytest.raises(yoloparity.YoloParityError, match="no backend reads '.bin'"):
        shutil.copy(yolov5n_pt, tmp_path / "weights.bin")
        yoloparity.load_model(str(tmp_path / "weights.bin"))


def _dets() -> Detections:
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 640, (5, 4)).astype(np.float32).reshape(5, 2, 2), axis=1).reshape(5, 4)
    return Detections(boxes, np.array([0.9, 0.3, 0.9, 0.5, 0.1], np.float32), np.array([0, 2, 1, 0, 79], np.int32))


@pytest.mark.unit
def test_detections_round_trip_exactly_through_json():
    from yoloparity.io.detections import from_dict, to_dict

    d = _dets()
    back = from_dict(json.loads(json.dumps(to_dict(d))))
    for field in ("boxes", "scores", "class_ids"):
        assert np.array_equal(getattr(back, field), getattr(d, field)) and getattr(back, field).dtype == getattr(d, field).dtype


@pytest.mark.unit
def test_coco_rows_are_xywh_in_score_then_index_order():
    from yoloparity.io.detections import to_coco, to_rows

    d = _dets()
    rows = to_coco(d, 42, list(range(1, 81)))
    assert [r["score"] for r in rows] == [0.9, 0.9, 0.5, 0.3, 0.1]
    assert [r["category_id"] for r in rows[:2]] == [1, 2]  # the tie keeps index order
    x1, y1, x2, y2 = d.boxes[0].tolist()
    assert rows[0]["bbox"] == [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
    names = tuple(f"c{i}" for i in range(80))
    assert [r["class_name"] for r in to_rows(d, names)] == ["c0", "c2", "c1", "c0", "c79"]


@pytest.mark.unit
def test_shape_batches_group_by_shape_as_the_predictor_does():
    from yoloparity.pipeline.batching import shape_batches

    shapes = [(448, 640), (640, 480), (448, 640), (448, 640), (640, 480), (448, 640)]
    assert shape_batches(shapes, 2) == [[0, 2], [1, 4], [3, 5]]  # in the order buckets fill, as predict runs them
    assert shape_batches(shapes, 16) == [[0, 2, 3, 5], [1, 4]]
    assert shape_batches(shapes, 1) == [[k] for k in range(6)]


@pytest.mark.unit
def test_atomic_write_leaves_the_old_file_or_nothing(tmp_path):
    from yoloparity.io.atomic import atomic_path, write_json

    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_backends_check_inputs_and_close(yolov5n_pt, yolov5n_onnx):
    """One base: every backend refuses a bad batch the same way, and a closed model refuses to run."""
    x = np.zeros((1, 3, 64, 64), np.float32)
    for path in (yolov5n_pt, yolov5n_onnx):
        with yoloparity.load_model(path) as model:
            assert model.raw(x).shape[0] == 1
            with pytest.raises(TypeError, match="float32"):
                model.raw(x.astype(np.float64))
            with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
                model.raw(x[:, :1])
        with pytest.raises(yoloparity.YoloParityError, match="was closed"):
            model.raw(x)


def test_python_entry_points_fit_a_static_file_as_the_cli_does(assets, capsys, yolov5n_pt):
    """A static full-integer TFLite runs square at its size from `load_model().predict`, `yoloparity.predict` and the
    CLI alike (the fit lives in `YoloModel.predictor`, which every path crosses), saying so; `yoloparity.predict`
    routes load options (`precision`) to the loader."""
    import json

    from yoloparity.cli import main

    tflite, image = str(assets / "models" / "yolov8n_int8.tflite"), str(assets / "images" / "bus.jpg")
    with yoloparity.load_model(tflite) as model:
        [r] = model.predict(image)
        assert r.ok and model.last_predictor.notes and "static 640x640" in model.last_predictor.notes[0]
    [via_function] = yoloparity.predict(tflite, image)
    assert main(["predict", tflite, image, "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(r.detections) == len(via_function.detections) == summary["detections"] > 0
    [fp64] = yoloparity.predict(yolov5n_pt, image, precision="fp64")
    [fp32] = yoloparity.predict(yolov5n_pt, image)
    assert fp64.ok and sorted(fp64.detections.class_ids.tolist()) == sorted(fp32.detections.class_ids.tolist())


@pytest.mark.unit
def test_json_is_one_option_in_every_command(tmp_path, capsys):
    """``--json`` alone (or ``-``) prints the JSON instead of the table; ``--json FILE`` writes it and keeps the table."""
    import json

    from yoloparity.cli import main

    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert "cpu" in json.dumps(env).lower()
    import openvino as ov  # env names what OpenVINO's CPU plugin picks here when not told (read from it, any CPU)

    assert env["openvino.cpu_default_precision"] == ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert main(["env", "--json", str(tmp_path / "env.json")]) == 0
    table = capsys.readouterr().out
    assert "what" in table and json.loads((tmp_path / "env.json").read_text())
    for command in ("predict", "val", "audit", "compare", "quantize", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--json [FILE]" in capsys.readouterr().out, command
