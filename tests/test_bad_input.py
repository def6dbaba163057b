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
    _assert_one_line_error(code, err, "cut.jpg: truncated JPEG")
    assert len(err.splitlines()) == 1  # the one input's problem is the whole message


def test_text_file_named_jpg(capsys, yolov5n_pt, text_as_jpeg):
    code, err = _cli(capsys, yolov5n_pt, text_as_jpeg)
    _assert_one_line_error(code, err, "notes.jpg: not a decodable image")


def test_a_folder_of_only_bad_images_says_how_many(capsys, tmp_path, yolov5n_pt, text_as_jpeg, truncated_jpeg):
    assert text_as_jpeg.parent == truncated_jpeg.parent == tmp_path  # the folder holds just these two
    code, err = _cli(capsys, yolov5n_pt, tmp_path)
    _assert_one_line_error(code, err, "no image could be read: 2 inputs skipped")


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


@pytest.mark.unit
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


@pytest.mark.unit
def test_numpy_array_with_wrong_dtype_is_named():
    from yoloparity.data.sources import resolve_source
    from yoloparity.errors import BadImageError

    [item] = resolve_source([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(BadImageError, match="array0: expected a BGR uint8"):
        item.load()


def _png_header_claiming(path, width: int, height: int) -> str:
    """A small PNG whose header says width x height (its data holds a few rows): decoding it would need
    width x height x 3 bytes; our guard must refuse it from the header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress((b"\x00" + b"\x00" * (width * 3)) * 4, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return str(path)


@pytest.mark.unit
def test_image_header_sizes_are_read_without_decoding(tmp_path):
    import cv2

    from yoloparity.resources import encoded_image_size

    image = np.zeros((37, 53, 3), np.uint8)
    for ext in (".jpg", ".png", ".bmp", ".webp"):
        data = cv2.imencode(ext, image)[1].tobytes()
        assert encoded_image_size(data) in ((37, 53), None if ext == ".webp" else (37, 53)), ext
    assert encoded_image_size(b"not an image") is None
    png = _png_header_claiming(tmp_path / "x.png", 40000, 30000)
    assert encoded_image_size(open(png, "rb").read()) == (30000, 40000)


@pytest.mark.parametrize("strict", [False, True])
def test_oversize_image_is_one_line_and_nothing_written(capsys, tmp_path, yolov5n_pt, strict):
    png = _png_header_claiming(tmp_path / "huge.png", 40000, 40000)
    out = tmp_path / "out.json"
    code, err = _cli(capsys, yolov5n_pt, png, "--save-json", out, *(["--strict"] if strict else []))
    _assert_one_line_error(code, err, "huge.png", "40000x40000", "Mpixel limit")
    assert not out.exists() and len(err.splitlines()) == 1


def test_oversize_image_in_a_folder_is_counted_and_skipped(capsys, tmp_path, yolov5n_pt, assets):
    _png_header_claiming(tmp_path / "huge.png", 40000, 40000)
    shutil.copy(assets / "images" / "bus.jpg", tmp_path / "bus.jpg")
    code = main(["predict", yolov5n_pt, str(tmp_path), "--quiet", "--json"])
    captured = capsys.readouterr()
    import json

    summary = json.loads(captured.out)
    assert code == 0 and summary["images"] == 1 and summary["skipped"] == 1
    assert "huge.png" in summary["errors"][0] and "warning: skipped" in captured.err


def test_input_size_that_cannot_fit_memory_is_refused_up_front(capsys, tmp_path, yolov5n_pt, assets):
    from yoloparity.resources import available_memory

    assert available_memory() > 0  # read from /proc/meminfo (and the cgroup limit where there is one)
    out = tmp_path / "out.json"
    code, err = _cli(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--imgsz", 1_000_000, "--save-json", out)
    _assert_one_line_error(code, err, "1000000x1000000", "needs at least", "GB available")
    assert not out.exists()
    run_dir = tmp_path / "run"
    code = main(["val", yolov5n_pt, str(assets / "coco-val-mini" / "data.yaml"), "--imgsz", "1000000", "--quiet",
                 "--run-dir", str(run_dir)])
    _assert_one_line_error(code, capsys.readouterr().err, "needs at least")
    assert not run_dir.exists()
