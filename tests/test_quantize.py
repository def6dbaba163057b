"""int8 quantization: structural head-tail exclusion, calibration choice, accuracy budget, bad input."""

from __future__ import annotations

import collections
import json
import os

import onnx
import pytest

from yoloparity.cli import main
from yoloparity.data.datasets import load_dataset
from yoloparity.quantization.calibration import CalibrationError, split_images
from yoloparity.quantization.head_tail import head_tail_nodes, name_unnamed_nodes


@pytest.fixture(scope="module")
def data_yaml(assets) -> str:
    return str(assets / "coco-val-mini" / "data.yaml")


@pytest.mark.parametrize("pt,head_module,must_have,dfl_convs", [
    ("yolov5n.pt", "/model.24/", {"Sigmoid", "Pow", "Concat", "Mul", "Add", "Reshape"}, 0),
    ("yolov8n-random.pt", "/model.22/", {"Softmax", "Conv", "Sigmoid", "Sub", "Div", "Concat"}, 1),
    ("yolo11n-random.pt", "/model.23/", {"Softmax", "Conv", "Sigmoid", "Sub", "Div", "Concat"}, 1),
    ("yolo12n-random.pt", "/model.21/", {"Softmax", "Conv", "Sigmoid", "Sub", "Div", "Concat"}, 1),
    ("yolov10n-random.pt", "/model.23/", {"Softmax", "Conv", "Sigmoid", "Sub", "Add", "Concat"}, 1),  # one-to-one head
    ("yolo26n-random.pt", "/model.23/", {"Sigmoid", "Sub", "Add", "Mul", "Concat"}, 0),  # reg_max 1: no DFL
])
def test_head_tail_is_found_by_structure(assets, tmp_path, pt, head_module, must_have, dfl_convs):
    from yoloparity.yolo_model import export_model

    path = export_model(str(assets / "models" / pt), str(tmp_path / "m.onnx"))
    model = onnx.load(path)
    tail = head_tail_nodes(model)
    ops = collections.Counter(n.op_type for n in tail)
    assert must_have <= set(ops), ops
    assert all(n.name.startswith(head_module) for n in tail)  # nothing of the backbone or neck
    convs = [n for n in tail if n.op_type == "Conv"]
    assert len(convs) == dfl_convs  # only the DFL conv, where the head has one
    assert tail[-1].output[0] == model.graph.output[0].name or any(o.name in tail[-1].output for o in model.graph.output)
    # names are not used: renaming every node finds the same nodes
    for i, node in enumerate(model.graph.node):
        node.name = ""
    renamed = head_tail_nodes(name_unnamed_nodes(model))
    assert [n.op_type for n in renamed] == [n.op_type for n in tail]
    assert len({n.name for n in renamed}) == len(renamed)


def test_calibration_choice_is_deterministic_and_disjoint(data_yaml):
    dataset = load_dataset(data_yaml)
    a = split_images(dataset, data_yaml, 32, None)
    b = split_images(load_dataset(data_yaml), data_yaml, 32, None)
    assert [e.path for e in a.calibration] == [e.path for e in b.calibration]
    assert len(a.calibration) == 32 and len(a.validation) == len(dataset.images) - 32 and not a.overlap
    assert not {e.id for e in a.calibration} & {e.id for e in a.validation}
    whole = split_images(dataset, data_yaml, len(dataset.images), 10)
    assert whole.overlap and len(whole.validation) == 10
    with pytest.raises(CalibrationError, match="only 206"):
        split_images(dataset, data_yaml, 500, None)


def _quantize(capsys, *argv):
    code = main(["quantize", *map(str, argv), "--quiet"])
    return code, capsys.readouterr()


@pytest.mark.parametrize("flags,needle", [
    (["--calib-images", "500"], "500 calibration images asked for but the dataset has only 206"),
    (["--max-drop", "-0.1"], "--max-drop -0.1 is impossible"),
    (["--max-drop", "1.5"], "--max-drop 1.5 is impossible"),
    (["--exclude", "no/such/node"], "no/such/node"),
])
def test_bad_quantize_input_is_named_and_leaves_no_file(yolov5n_pt, data_yaml, tmp_path, capsys, flags, needle):
    out = tmp_path / "q.onnx"
    code, captured = _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--calib-images", 8, "--out", out, *flags)
    assert code == 2, captured
    assert needle in captured.err and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


AVX2_RAW_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])
"""


def _raw_here_and_on_avx2(model: str, x, tmp_path):
    """The model's raw output on this CPU and on an emulated AVX2 CPU (qemu-x86_64 -cpu Haswell)."""
    import numpy as np
    import onnxruntime as ort

    from yoloparity.benchmarking.emulated_cpu import run_on_avx2

    np.save(tmp_path / "x.npy", x)
    (tmp_path / "raw.py").write_text(AVX2_RAW_SCRIPT)
    done = run_on_avx2([str(tmp_path / "raw.py"), model, str(tmp_path / "x.npy"), str(tmp_path / "avx2.npy")], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    here = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    return here, np.load(tmp_path / "avx2.npy")


def _check_intervals(r: dict) -> None:
    """Every drop has its interval and its verdict is the one the interval and the budget give; the exit status and
    ``within_budget`` follow the held-out verdict."""
    from yoloparity.evaluate.bootstrap import DropInterval, budget_verdict

    assert [a["images"] for a in r["accuracy"]] == ["held-out", "all"]
    for acc in r["accuracy"]:
        iv = acc["interval"]
        assert iv["low"] <= iv["drop"] <= iv["high"] and iv["resamples"] >= 50 and iv["level"] == 0.95
        assert iv["drop"] == pytest.approx(iv["reference_map"] - iv["other_map"])
        assert acc["verdict"] == budget_verdict(DropInterval(**iv), r["max_drop"]).to_dict()
    held, every = r["accuracy"]
    assert held["interval"]["images"] == r["val_images"] and held["interval"]["drop"] == pytest.approx(r["drop"])
    assert every["interval"]["images"] == r["val_images"] + r["calib_images"]
    assert r["verdict"] == held["verdict"]["status"] and r["within_budget"] == (r["verdict"] == "within")


@pytest.mark.slow
def test_default_int8_keeps_accuracy_on_this_cpu_and_computes_the_same_without_vnni(yolov5n_pt, data_yaml, tmp_path,
                                                                                   capsys, assets, monkeypatch):
    """The default quantize settings (percentile calibration, pair-safe scales, accuracy control) at 320: the drop
    with its intervals, and saturation-safe: on an emulated AVX2 CPU the file gives this CPU's raw output, where the
    8-bit-scaled file does not."""
    import cv2
    import numpy as np

    from yoloparity.benchmarking.emulated_cpu import emulator
    from yoloparity.environment import int8_dot_product
    from yoloparity.pipeline.letterbox import letterbox, to_input
    from yoloparity.quantization.saturation import quantized_convs

    out, report = tmp_path / "auto.onnx", tmp_path / "auto.json"
    code, captured = _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--imgsz", 320, "--calib-images", 16,
                               "--val-images", 48, "--max-steps", 1, "--max-drop", 0.01, "--out", out, "--json", report)
    r = json.loads(report.read_text())
    print(captured.out)
    assert code == (0 if r["within_budget"] else 3), captured.err
    assert r["val_images"] == 48 and r["calib_images"] == 16 and not r["overlap"] and r["calib_method"] == "percentile"
    assert 0.2 < r["float_map50_95"] < 0.35
    _check_intervals(r)
    assert r["drop"] <= 0.02 and r["accuracy"][1]["interval"]["drop"] <= 0.02  # int8, not a broken model
    assert r["peak_rss_mb"] > 100 and "mAP50-95 drop with a paired bootstrap interval" in captured.out
    assert len(r["excluded_structural"]) >= 30 and all(n.startswith("/model.24/") for n in r["excluded_structural"])
    assert {"/model.24/m.0/Conv", "/model.24/m.1/Conv", "/model.24/m.2/Conv"} <= set(r["excluded_structural"])
    assert r["int8_size_bytes"] < 0.5 * r["float_size_bytes"]
    assert r["float_latency_ms"] > 0 and r["int8_latency_ms"] > 0  # the speed-up itself is a benchmark figure
    sat = r["saturation"]
    quantized = quantized_convs(onnx.load(str(out)))
    assert sat["layers_total"] >= len(quantized) > 0  # every convolution quantized at the start is analysed
    assert sat["layers_can_saturate"] == sum(layer["can_saturate"] for layer in sat["layers"]) > 0
    first = next(layer for layer in sat["layers"] if layer["node"] == "/model.0/conv/Conv")
    assert first["saturated_outputs"] > 0.05 * first["outputs"] and first["max_error_steps"] > 10  # the image layer
    assert sat["residual_layers"] == [] and all(layer["worst_pair_after"] <= 128 for layer in sat["layers"])
    # pair-safe scales only ever grow (a coarser step), and only as far as the weights need
    growth = [layer["scale_growth"] for layer in sat["layers"] if layer["scale_growth"] is not None]
    assert growth and min(growth) >= 1 - 1e-6 and sat["mean_scale_growth"] >= 1 - 1e-6  # (float32 vs float64 scales)
    assert "int16 pair-sum saturation" in captured.out
    q = onnx.load(str(out))
    ops = collections.Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] > 50 and ops["DequantizeLinear"] > 50
    assert any(p.key == "yoloparity.spec" for p in q.metadata_props)
    from yoloparity.yolo_model import load_model

    assert load_model(str(out), backend="onnxruntime").spec.nc == 80
    if int8_dot_product() != "vnni" or emulator() is None:
        pytest.skip(f"accuracy checked on this CPU ({int8_dot_product()}); the VNNI-vs-AVX2 identity needs a VNNI CPU and "
                    "qemu-x86_64 (apt-get install qemu-user)")
    x = to_input(letterbox(cv2.imread(str(assets / "images" / "bus.jpg")), 320, "square")[0])[None]
    here, avx2 = _raw_here_and_on_avx2(str(out), x, tmp_path)
    assert np.abs(here - avx2).max() < 1e-3, np.abs(here - avx2).max()
    unsafe, unsafe_report = tmp_path / "unsafe.onnx", tmp_path / "unsafe.json"
    _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--imgsz", 320, "--calib-images", 16, "--max-steps", 0,
              "--saturation", "report", "--val-images", 4, "--bootstrap", 0, "--out", unsafe, "--json", unsafe_report)
    here, avx2 = _raw_here_and_on_avx2(str(unsafe), x, tmp_path)
    assert np.abs(here - avx2).max() > 1.0  # the max/127 file computes another function without VNNI
    # on a CPU without VNNI, predict says so once for the max/127 file and says nothing for the default one
    import yoloparity.environment as environment

    monkeypatch.setattr(environment, "int8_dot_product", lambda flags=None: "int16-pairs")
    for path, expected in ((unsafe, 1), (out, 0)):
        main(["predict", str(path), str(assets / "images" / "bus.jpg"), "--backend", "onnxruntime", "--quiet"])
        err = capsys.readouterr().err
        assert err.count("can saturate their int16 pair sums on this CPU (no VNNI)") == expected, err


@pytest.mark.slow
def test_each_image_is_read_once_and_calibration_streams(yolov5n_pt, data_yaml, tmp_path, monkeypatch):
    """One pass over the data: a run with an accuracy-control step, the saturation emulation, the sensitivity probe
    and the latency sample decodes each image it measures exactly once, and no image it does not need."""
    import cv2

    from yoloparity.api import quantize

    decoded = collections.Counter()
    imdecode = cv2.imdecode

    def counting(buffer, flags):
        decoded[hash(bytes(buffer))] += 1
        return imdecode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", counting)
    r = quantize(yolov5n_pt, data_yaml, str(tmp_path / "q.onnx"), imgsz=320, calib_images=4, val_images=8,
                 max_steps=1, max_drop=0.0, bootstrap=20, latency_repeats=2, saturation_images=4)
    assert len(r.steps) == 2  # the control step ran (and measured every image again, from memory)
    assert sum(decoded.values()) == 12 and set(decoded.values()) == {1}  # 4 calibration + 8 held out, once each


@pytest.mark.slow
def test_exclude_none_collapses(yolov5n_pt, data_yaml, tmp_path, capsys):
    none_out, none_report = tmp_path / "none.onnx", tmp_path / "none.json"
    # min/max calibration, the classic setting: the tail's one tensor of box pixels and 0-1 scores gets one uint8
    # scale set by the largest pixel value (percentile clips the pixels instead: degraded, not collapsed)
    # (at 640 the step of that scale, 2.5, rounds every score to 0; at 320 it is 1.25 and scores survive as 0 or 1.25)
    code, captured = _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--calib-images", 4, "--calib-method", "minmax",
                               "--exclude", "none", "--max-steps", 0, "--val-images", 8, "--bootstrap", 50,
                               "--out", none_out, "--json", none_report)
    assert code == 3
    r = json.loads(none_report.read_text())
    assert r["int8_map50_95"] < 0.05 and not r["within_budget"] and r["verdict"] == "over"
    assert any("collapsed" in n and "--exclude auto" in n for n in r["notes"])
    assert "OVER it" in captured.out and os.path.exists(none_out)


@pytest.mark.slow
def test_tight_budget_returns_sensitive_nodes_to_float(yolov5n_pt, data_yaml, tmp_path, capsys):
    report = tmp_path / "tight.json"
    code, captured = _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--imgsz", 320, "--calib-images", 8,
                               "--max-drop", 0.001, "--max-steps", 1, "--val-images", 24, "--bootstrap", 50,
                               "--out", tmp_path / "tight.onnx", "--json", report)
    r = json.loads(report.read_text())
    print(captured.out)
    first = r["steps"][0]
    first_worst = max(r["float_map50_95"] - first["map50_95"], first["drop_all"])
    if first_worst <= 0.001:  # the first int8 model already met the budget on this CPU: no control step was needed
        assert len(r["steps"]) == 1
        return
    assert len(r["steps"]) == 2  # over budget: exactly the one control step --max-steps allows
    kept = [s["kept_float"] for s in r["steps"]]
    assert kept[1] > kept[0] and r["steps"][1]["reverted"] and not r["steps"][0]["reverted"]
    worst = [max(r["float_map50_95"] - s["map50_95"], s["drop_all"]) for s in r["steps"]]
    chosen = r["steps"][worst.index(min(worst))]
    assert r["int8_map50_95"] == chosen["map50_95"]  # the model with the smaller worst drop is the one written
    # the exit status is the interval's verdict, whichever way this CPU's numbers went
    assert code == (0 if r["within_budget"] else 3)
    assert (min(worst) > 0.001) == any("was not met" in n for n in r["notes"])


def test_tflite_export_refuses_a_dynamic_onnx(yolov5n_onnx, data_yaml, tmp_path, capsys):
    out = tmp_path / "x.tflite"
    code, captured = _quantize(capsys, yolov5n_onnx, "--data", data_yaml, "--format", "tflite-int8", "--out", out)
    assert code == 2 and "dynamic input shape" in captured.err and "static shape" in captured.err
    assert not out.exists()


@pytest.mark.slow
def test_openvino_int8_with_nncf_keeps_the_structural_scope_float(yolov5n_pt, data_yaml, tmp_path, capsys):
    """NNCF's int8 IR: written atomically beside its .bin with the spec, read back by the openvino backend as int8,
    the head's decode tail kept float (NNCF's ignored scope), accuracy measured like every other format."""
    pytest.importorskip("nncf")
    out, report = tmp_path / "ov" / "y5.xml", tmp_path / "ov.json"
    code, captured = _quantize(capsys, yolov5n_pt, "--data", data_yaml, "--format", "openvino-int8", "--imgsz", 320,
                               "--calib-images", 8, "--val-images", 24, "--max-steps", 0, "--bootstrap", 50,
                               "--out", out, "--json", report)
    r = json.loads(report.read_text())
    print(captured.out)
    assert code == (0 if r["within_budget"] else 3), captured.err
    assert r["format"] == "openvino-int8" and r["calib_method"].startswith("NNCF")
    assert out.exists() and (tmp_path / "ov" / "y5.bin").exists()
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["y5.bin", "y5.xml"]  # no temporary left
    assert len(r["excluded_structural"]) >= 30 and set(r["excluded_structural"]) <= set(r["kept_float"])
    assert r["float_map50_95"] > 0.2 and r["drop"] < 0.05
    import openvino as ov

    from yoloparity.yolo_model import load_model

    ir = ov.Core().read_model(str(out))
    fake_quantized = {op.get_friendly_name() for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"}
    assert len(fake_quantized) > 50
    with load_model(str(out), backend="openvino") as model:
        assert model.backend.precision == "int8" and model.spec.imgsz == (320, 320) and model.spec.nc == 80
    # a tail convolution keeps its float input: no FakeQuantize feeds the logit convolutions
    tail_conv = next(op for op in ir.get_ops() if op.get_friendly_name() == "/model.24/m.0/Conv")
    assert tail_conv.input_value(0).get_node().get_type_name() != "FakeQuantize"


@pytest.mark.slow
@pytest.mark.parametrize("pt", ["yolov8n-from-int8.pt", "yolo26n-from-int8.pt", "yolov10n-from-int8.pt"])
def test_trained_families_quantize_without_collapse(assets, data_yaml, tmp_path, capsys, pt):
    """Every Ultralytics-era family, end-to-end heads included (their top-k runs on the float decode tail): the int8
    model keeps most of its float mAP — the failure the field reports for YOLO26/YOLOv10 int8 is near-zero mAP."""
    out, report = tmp_path / "q.onnx", tmp_path / "q.json"
    code, captured = _quantize(capsys, assets / "models" / pt, "--data", data_yaml, "--imgsz", 320, "--calib-images", 4,
                               "--val-images", 16, "--max-steps", 0, "--bootstrap", 50, "--out", out, "--json", report)
    r = json.loads(report.read_text())
    assert code == (0 if r["within_budget"] else 3), captured.err
    _check_intervals(r)
    assert r["float_map50_95"] > 0.25 and r["int8_map50_95"] > 0.8 * r["float_map50_95"], r["accuracy"]
    assert all(n.startswith(("/model.22/", "/model.23/")) for n in r["excluded_structural"])
    from yoloparity.yolo_model import load_model

    with load_model(str(out), backend="onnxruntime") as model:
        assert model.spec.head_format == ("v8" if pt.startswith("yolov8n") else "e2e")
        bus = model.predict([str(assets / "images" / "bus.jpg")], mode="square", imgsz=320)[0]
    assert 0 in bus.detections.class_ids.tolist() and 5 in bus.detections.class_ids.tolist()  # people and the bus


@pytest.mark.unit
def test_percentile_range_narrowing_keeps_zero_and_the_grid_and_leaves_tight_ranges_alone():
    """The TFLite range narrowing (run in the converter's environment; its arithmetic is numpy): a tensor whose
    values sit in 0..5 but whose min/max range reached 25.5 for one outlier gets a five times finer scale, its range
    still holds zero exactly, and a tensor already filling its range is left as it is."""
    import numpy as np

    from yoloparity.quantization.tflite_ranges import _Groups, _narrowed

    scale, zero_point = 0.1, -128  # the grid 0.0 .. 25.5
    counts = np.zeros(256, np.int64)
    counts[:51] = 20_000  # int8 values -128 .. -78 (index = value + 128): 0.0 .. 5.0 on the grid
    counts[255] = 1  # one outlier at 25.5 (int8 127) set the converter's max
    new_scale, new_zero = _narrowed(counts, scale, zero_point, 99.999)
    assert new_scale == pytest.approx(5.0 / 255, rel=1e-6) and new_zero == -128  # zero is the lowest step, exactly
    full = np.full(256, 1000, np.int64)  # values spread over the whole range: nothing to narrow
    assert _narrowed(full, scale, zero_point, 99.999) is None
    groups = _Groups()
    groups.union(1, 2)
    groups.union(3, 2)
    assert groups.find(1) == groups.find(3) != groups.find(4)


@pytest.mark.unit
def test_a_matrix_product_s_right_operand_gets_zero_point_zero_and_a_range_that_covers_its_own():
    """XNNPACK runs an int8 product of two activations only when its right operand has zero point 0: the range step
    widens such a group (every tensor in it) to the symmetric range around zero that still holds its old range, keeps
    each tensor's scale before the change (its consumers' biases are requantized from it), and leaves a group that
    already has zero point 0 alone."""
    from types import SimpleNamespace

    import numpy as np

    from yoloparity.quantization.tflite_ranges import _symmetric

    def tensor(scale, zero_point):
        return SimpleNamespace(quantization=SimpleNamespace(scale=np.array([scale], np.float32),
                                                            zeroPoint=np.array([zero_point], np.int64)))

    graph = SimpleNamespace(tensors=[tensor(0.1, 5), tensor(0.1, 5), tensor(0.2, 0)])
    old_scale = {}
    assert _symmetric(graph, [[0, 1], [2]], old_scale) == 1
    for t in (0, 1):
        q = graph.tensors[t].quantization
        assert int(q.zeroPoint[0]) == 0
        low, high = -128 * float(q.scale[0]), 127 * float(q.scale[0])
        assert low <= (-128 - 5) * 0.1 + 1e-6 and high >= (127 - 5) * 0.1 - 1e-6  # the old range -13.3 .. 12.2 held
        assert float(q.scale[0]) == pytest.approx(133 * 0.1 / 128, rel=1e-6)  # no wider than it must be
    assert old_scale == {0: pytest.approx(0.1), 1: pytest.approx(0.1)}
    assert float(graph.tensors[2].quantization.scale[0]) == pytest.approx(0.2)


@pytest.mark.unit
def test_mse_range_is_the_least_squared_error_range_and_weighs_outliers_by_their_count():
    """The MSE narrowing picks, of every range on the grid holding zero, the one whose clipping plus rounding error
    is least (checked against every pair, scored one by one); one outlier in a million is clipped, a hundred are
    not, where a percentile would treat both alike."""
    import numpy as np

    from yoloparity.quantization.tflite_ranges import _mse_narrowed

    scale, zero_point = 0.1, -128  # the grid 0.0 .. 25.5
    x = (np.arange(256) - 128 - zero_point) * scale

    def error(counts, low, high):
        step = (high - low) / 255
        clipped = np.where(x < low, low - x, 0) + np.where(x > high, x - high, 0)
        inside = (x >= low) & (x <= high)
        return float((counts * clipped ** 2).sum() + counts[inside].sum() * step ** 2 / 12)

    def chosen(counts):
        found = _mse_narrowed(counts, scale, zero_point)
        if found is None:
            return None
        new_scale, new_zero = found
        return (-128 - new_zero) * new_scale, (127 - new_zero) * new_scale

    counts = np.zeros(256, np.int64)
    counts[:51] = 20_000  # values 0.0 .. 5.0
    counts[255] = 1  # one outlier at 25.5
    low, high = chosen(counts)
    best = min(error(counts, 0.0, h) for h in x[1:])  # zero is the lowest value here, so every range starts at 0
    assert error(counts, low, high) == pytest.approx(best, rel=1e-9) and low == pytest.approx(0.0, abs=1e-9)
    assert 5.0 <= high < 25.5  # the outlier is clipped
    counts[255] = 100  # a hundred such values: clipping them costs more than a finer grid gains
    assert chosen(counts)[1] > 25.0
