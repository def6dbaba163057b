"""The LiteRT and OpenVINO backends on real third-party files and our own exports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yoloparity import load_model
from yoloparity.cli import main

TFLITE = {  # file: (input dtype, expected precision)
    "yolov8n_full_integer_quant.tflite": (np.int8, "int8"),
    "yolov8n_int8.tflite": (np.float32, "int8"),
    "yolov5n-int8.tflite": (np.uint8, "int8"),
}


@pytest.mark.parametrize("name", sorted(TFLITE))
def test_tflite_files_find_the_bus_and_the_people(assets, name):
    model = load_model(str(assets / "models" / name), backend="litert", threads=2)
    assert model.backend.in_dtype == TFLITE[name][0]
    assert model.backend.precision == TFLITE[name][1]
    assert model.backend.constraints.height == 640 and model.backend.constraints.width == 640
    bus, zidane = model.predict([str(assets / "images" / "bus.jpg"), str(assets / "images" / "zidane.jpg")],
                                mode="square", conf=0.4)
    bus_classes = sorted(int(c) for c in bus.detections.class_ids)
    assert bus_classes.count(5) == 1 and bus_classes.count(0) >= 3, bus_classes  # a bus and (at least 3 of 4) people
    assert sorted(int(c) for c in zidane.detections.class_ids).count(0) == 2
    # boxes come back in image pixels (the exporters' normalized xywh were scaled back)
    bus_box = bus.detections.boxes[list(bus.detections.class_ids).index(5)]
    assert bus_box[2] - bus_box[0] > 500 and bus_box[3] - bus_box[1] > 300


def test_ultralytics_metadata_is_read_from_inside_the_tflite(assets):
    model = load_model(str(assets / "models" / "yolov8n_full_integer_quant.tflite"), backend="litert")
    assert model.backend.metadata_source == "embedded"
    assert model.spec.names[0] == "person" and model.spec.nc == 80 and model.spec.head_format == "v8"
    v5 = load_model(str(assets / "models" / "yolov5n-int8.tflite"), backend="litert")
    assert v5.backend.metadata_source is None and v5.spec.head_format == "v5" and v5.spec.nc == 80


def test_int8_input_is_quantized_with_the_models_scale(assets):
    backend = load_model(str(assets / "models" / "yolov8n_full_integer_quant.tflite"), backend="litert").backend
    scale, zero = backend.in_quant
    x = np.array([0.0, 0.5, 1.0, 5.0], np.float32)
    q = backend._quantize_input(x)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8))
    assert q[-1] == 127  # clipped, not wrapped


def test_int8_input_truncation_reproduces_ultralytics_rule(assets):
    """--int8-input truncate: (x / scale + zero_point).astype(int8), as Ultralytics' LiteRT backend feeds the image:
    toward zero instead of to the nearest step, so about half the pixel values enter one step off."""
    path = str(assets / "models" / "yolov8n_full_integer_quant.tflite")
    rounding = load_model(path, backend="litert").backend
    truncating = load_model(path, backend="litert", int8_input="truncate").backend
    scale, zero = truncating.in_quant
    pixels = np.arange(256, dtype=np.float32) / np.float32(255)
    t, r = truncating._quantize_input(pixels), rounding._quantize_input(pixels)
    np.testing.assert_array_equal(t, np.clip(pixels / np.float32(scale) + zero, -128, 127).astype(np.int8))
    np.testing.assert_array_equal(r, np.clip(np.round(pixels / np.float32(scale)) + zero, -128, 127).astype(np.int8))
    assert np.abs(r.astype(int) - t.astype(int)).max() == 1 and (r != t).sum() > 64
    with pytest.raises(Exception, match="int8_input"):
        load_model(path, backend="litert", int8_input="floor")


def test_tflite_batch_runs_image_by_image_and_equals_single(assets, coco_images):
    from yoloparity.quantization.calibration import preprocess

    model = load_model(str(assets / "models" / "yolov5n-int8.tflite"), backend="litert")
    batch = np.concatenate([preprocess(p, 640, 32, "yolov5") for p in coco_images[:3]])
    together = model.raw(batch)
    for i in range(3):
        np.testing.assert_array_equal(together[i], model.raw(batch[i:i + 1])[0])


@pytest.mark.slow
@pytest.mark.parametrize("name,low,high", [
    ("yolov8n_int8.tflite", 0.36, 0.42),
    ("yolov8n_full_integer_quant.tflite", 0.30, 0.37),
    ("yolov5n-int8.tflite", 0.25, 0.30),
])
def test_tflite_val_on_coco_val_mini(assets, tmp_path, capsys, name, low, high):
    report = tmp_path / "val.json"
    code = main(["val", str(assets / "models" / name), str(assets / "coco-val-mini" / "data.yaml"), "--backend", "litert",
                 "--threads", "2", "--quiet", "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    print(name, data["mAP50_95"], data["mAP50"])
    assert low < data["mAP50_95"] < high
    assert any("static 640x640" in n for n in data["notes"])


def test_openvino_matches_onnxruntime(yolov5n_onnx, coco_images):
    from yoloparity.quantization.calibration import preprocess

    ov = load_model(yolov5n_onnx, backend="openvino", threads=2)
    ort = load_model(yolov5n_onnx, backend="onnxruntime", threads=2)
    assert ov.spec == ort.spec
    batch = np.concatenate([preprocess(p, 640, 32, "yolov5") for p in coco_images[:2]])
    a, b = ov.raw(batch), ort.raw(batch)
    assert a.shape == b.shape
    assert np.abs(a[..., 4:] - b[..., 4:]).max() < 1e-3  # objectness and class scores
    assert np.abs(a[..., :4] - b[..., :4]).max() < 0.05  # box pixels
    da, db = ov.predict(coco_images[:4]), ort.predict(coco_images[:4])
    for x, y in zip(da, db):
        assert sorted(x.detections.class_ids.tolist()) == sorted(y.detections.class_ids.tolist())


def test_openvino_ir_runs_and_a_missing_bin_is_named(yolov5n_onnx, tmp_path, capsys, assets):
    import openvino as ov

    xml = tmp_path / "yolov5n.xml"
    ov.save_model(ov.Core().read_model(yolov5n_onnx), str(xml))
    (tmp_path / "metadata.yaml").write_text("names: {0: person, 1: bicycle}\nstride: 32\n")
    with pytest.raises(Exception):
        load_model(str(xml), backend="openvino")  # metadata says 2 classes, the output has 80: refused by shape
    (tmp_path / "metadata.yaml").unlink()
    model = load_model(str(xml), backend="openvino")
    assert model.spec.nc == 80
    assert len(model.predict([str(assets / "images" / "bus.jpg")])[0].detections) >= 4
    (tmp_path / "yolov5n.bin").unlink()
    code = main(["predict", str(xml), str(assets / "images" / "bus.jpg"), "--backend", "openvino", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "yolov5n.xml" in err and "yolov5n.bin" in err and "Traceback" not in err


def test_wrong_backend_for_a_file_names_the_right_one(assets, capsys):
    model, image = str(assets / "models" / "yolov8n_int8.tflite"), str(assets / "images" / "bus.jpg")
    code = main(["predict", model, image, "--backend", "torch", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--backend litert" in err
    assert main(["predict", model, image, "--quiet", "--json"]) == 0  # no --backend: the suffix's reader
    assert json.loads(capsys.readouterr().out)["backend"] == "litert"
    assert load_model(model).backend.name == "litert"


@pytest.mark.slow
def test_openvino_runs_a_dynamic_int8_qdq_model_like_onnxruntime(yolov5n_onnx, assets, tmp_path):
    """Regression: OpenVINO compiled with dynamic shapes mis-executed this model (415 vs 46 boxes on bus.jpg)."""
    from yoloparity.quantization.runner import QuantizeOptions, run_quantize

    out = str(tmp_path / "dyn-int8.onnx")
    run_quantize(yolov5n_onnx, str(assets / "coco-val-mini" / "data.yaml"), out,
                 QuantizeOptions(calib_images=4, val_images=4, max_steps=0, latency_repeats=1, saturation_images=2,
                                 bootstrap=20), log=lambda _: None)
    images = [str(assets / "images" / "bus.jpg"), str(assets / "images" / "zidane.jpg")]
    ov = load_model(out, backend="openvino").predict(images, mode="rect", batch=2)
    ort = load_model(out, backend="onnxruntime").predict(images, mode="rect", batch=2)
    for a, b in zip(ov, ort):  # int8 kernels differ between runtimes: a borderline box may come or go, no more
        assert a.detections.class_ids.tolist().count(0) == b.detections.class_ids.tolist().count(0)
        assert abs(len(a.detections) - len(b.detections)) <= 1 and len(a.detections) < 10


def test_unreadable_raw_maps_metadata_is_refused_naming_the_file(assets, tmp_path):
    """A file whose metadata says it ends at raw head maps but whose layout cannot be read is refused with the file
    and the key named, never decoded with a guessed layout."""
    import shutil

    from yoloparity.errors import ModelFileError

    model = tmp_path / "maps.tflite"
    shutil.copy(assets / "models" / "yolov5n-int8.tflite", model)
    (tmp_path / "metadata.yaml").write_text('names: {0: person}\nyoloparity.raw_maps: "{not json"\n')
    with pytest.raises(ModelFileError, match=r"maps\.tflite.*yoloparity\.raw_maps.*cannot be read"):
        load_model(str(model), backend="litert")
