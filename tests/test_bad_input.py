"""Bad input gives one line naming the file and the problem (CLI exit 2, no traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from yoloparity.cli import main


def _cli(capsys, *argv):
    code = main(["predict", *map(str, argv), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def _assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def truncated_jpeg(tmp_path, assets):
    data = (assets / "images" / "bus.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def text_as_jpeg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    return path


def test_missing_source(capsys, yolov5n_pt, tmp_path):
    code, err = _cli(capsys, yolov5n_pt, tmp_path / "nope.jpg")
    _assert_one_line_error(code, err, "nope.jpg", "no such file")


def test_missing_model(capsys, tmp_path, assets):
    code, err = _cli(capsys, tmp_path / "model.pt", assets / "images" / "bus.jpg")
    _assert_one_line_error(code, err, "model.pt", "no such model file")


def test_truncated_jpeg(capsys, yolov5n_pt, truncated_jpeg):
    code, err = _cli(capsys, yolov5n_pt, truncated_jpeg)
    assert "cut.jpg: truncated JPEG" in err
    _assert_one_line_error(code, err, "no image could be read")


def test_text_file_named_jpg(capsys, yolov5n_pt, text_as_jpeg):
    code, err = _cli(capsys, yolov5n_pt, text_as_jpeg)
    assert "notes.jpg: not a decodable image" in err
    _assert_one_line_error(code, err, "no image could be read")


def test_strict_mode_stops_at_the_bad_image(capsys, yolov5n_pt, text_as_jpeg):
    code = main(["predict", yolov5n_pt, str(text_as_jpeg), "--strict", "--quiet"])
    _assert_one_line_error(code, capsys.readouterr().err, "notes.jpg", "not a decodable image")


def test_empty_folder(capsys, yolov5n_pt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _cli(capsys, yolov5n_pt, empty)
    _assert_one_line_error(code, err, "empty", "holds no images")


def test_pt_that_is_not_a_yolo_checkpoint(capsys, tmp_path, assets):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    code, err = _cli(capsys, path, assets / "images" / "bus.jpg")
    _assert_one_line_error(code, err, "weights.pt", "not a YOLO checkpoint")


def test_truncated_pt(capsys, tmp_path, yolov5n_pt, assets):
    data = open(yolov5n_pt, "rb").read()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 3])
    code, err = _cli(capsys, path, assets / "images" / "bus.jpg")
    _assert_one_line_error(code, err, "half.pt")


def _onnx_with_output(path, out_shape):
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["pooled"], axes=[2, 3], keepdims=0),
         helper.make_node("Reshape", ["pooled", "shape"], ["output0"])],
        "bad",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        [helper.make_tensor("shape", TensorProto.INT64, [len(out_shape)], out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


def test_onnx_with_unexpected_output_shape(capsys, tmp_path, assets):
    path = _onnx_with_output(tmp_path / "odd.onnx", [1, 3])
    code = main(["predict", str(path), str(assets / "images" / "bus.jpg"), "--backend", "onnxruntime", "--quiet"])
    _assert_one_line_error(code, capsys.readouterr().err, "odd.onnx", "unexpected output shape [1, 3]")


def test_folder_with_a_bad_image_skips_and_counts_it(capsys, tmp_path, assets, yolov5n_pt, truncated_jpeg, text_as_jpeg):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(assets / "images" / "bus.jpg", folder / "a_bus.jpg")
    shutil.copy(truncated_jpeg, folder / "b_cut.jpg")
    shutil.copy(assets / "images" / "zidane.jpg", folder / "c_zidane.jpg")
    shutil.copy(text_as_jpeg, folder / "d_notes.jpg")
    out = tmp_path / "out.json"
    code = main(["predict", yolov5n_pt, str(folder), "--save-json", str(out), "--quiet", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    import json

    summary = json.loads(captured.out)
    assert summary["images"] == 2 and summary["skipped"] == 2
    assert any("b_cut.jpg: truncated JPEG" in e for e in summary["errors"])
    assert any("d_notes.jpg: not a decodable image" in e for e in summary["errors"])
    assert "warning: skipped" in captured.err
    written = json.loads(out.read_text())
    assert [w["file"].rsplit("/", 1)[1] for w in written] == ["a_bus.jpg", "c_zidane.jpg"]
    assert [len(w["detections"]) for w in written] == [5, 3]


def test_python_m_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "yoloparity", "predict", str(tmp_path / "missing.pt"), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.pt'}: no such model file"]


def test_bad_threshold_is_a_clear_error(capsys, yolov5n_pt, assets):
    code, err = _cli(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--conf", "1.5")
    _assert_one_line_error(code, err, "conf must be in [0, 1]")


def test_numpy_array_with_wrong_dtype_is_named():
    from yoloparity.data.sources import resolve_source
    from yoloparity.errors import BadImageError

    [item] = resolve_source([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(BadImageError, match="array0: expected a BGR uint8"):
        item.load()
