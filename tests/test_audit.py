"""audit: detections compared across configurations, differences classified and localized, a verdict."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from yoloparity.auditing.spec import SpecError, parse_config
from yoloparity.cli import main


def _audit(capsys, *argv):
    code = main(["audit", *map(str, argv), "--quiet"])
    return code, capsys.readouterr()


@pytest.mark.slow
def test_backends_and_batch_sizes_have_no_real_differences(capsys, tmp_path, yolov5n_pt, yolov5n_onnx, coco_images):
    out = tmp_path / "audit.json"
    images = coco_images[::2]  # 103 images of every shape bucket; the batch tests in test_parity cover all 206
    code, printed = _audit(capsys, yolov5n_pt, *images, "--config", "batch=1", "--config", "batch=16",
                           "--config", f"backend=onnxruntime,batch=1,model={yolov5n_onnx}",
                           "--config", f"backend=onnxruntime,batch=16,model={yolov5n_onnx}", "--json", out)
    report = json.loads(out.read_text())
    assert code == 0 and report["verdict"] == "pass", printed.out
    assert report["images"] == len(images)
    torch16, ort1, ort16 = report["configs"]
    assert torch16["images_differing"] == 0 and torch16["raw"]["max_abs"] == 0.0  # bitwise on CPU
    for c in (ort1, ort16):
        assert c["real"] == 0
        assert 0 < c["raw"]["max_abs"] < 1e-2  # numerics differ a little, detections do not
        assert all(v["reference"] == v["config"] for v in c["per_class"].values()) or c["borderline"] > 0
    assert "verdict: PASS" in printed.out


def test_square_vs_rect_is_localized_to_preprocessing(capsys, tmp_path, yolov5n_pt, assets):
    out = tmp_path / "audit.json"
    code, printed = _audit(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--config", "mode=rect",
                           "--config", "mode=square", "--json", out)
    report = json.loads(out.read_text())
    assert code == 1 and report["verdict"] == "fail"
    [cfg] = report["configs"]
    assert cfg["real"] >= 1 and cfg["first_divergence"] == {"preprocessing": 1}
    assert cfg["localization"][0]["detail"] == "input 640x480 vs 640x640"
    assert "person" in printed.out and "preprocessing: input 640x480 vs 640x640" in printed.out


def _perturbed_copy(src: str, dst, name: str | None = None) -> str:
    """The same export with the weights of one convolution changed."""
    model = onnx.load(src)
    init = next(i for i in model.graph.initializer if (i.name == name if name else len(i.dims) == 4 and i.dims[0] >= 16))
    w = numpy_helper.to_array(init).copy()
    w[: w.shape[0] // 2] *= 2.0  # half the filters of one layer doubled: a clearly different network
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    return str(dst)


def test_perturbed_weight_is_localized_to_model_numerics(capsys, tmp_path, yolov5n_onnx, yolov5n_pt, assets):
    bad = _perturbed_copy(yolov5n_onnx, tmp_path / "perturbed.onnx")
    out = tmp_path / "audit.json"
    code, _ = _audit(capsys, yolov5n_pt, assets / "images", "--config", f"backend=onnxruntime,model={yolov5n_onnx}",
                     "--config", f"backend=onnxruntime,model={bad}", "--json", out)
    report = json.loads(out.read_text())
    [cfg] = report["configs"]
    assert code == 1 and cfg["real"] >= 1
    assert set(cfg["first_divergence"]) == {"model numerics"}
    assert cfg["raw"]["max_abs"] > 1e-2


def test_run_to_run_identity_is_checked(capsys, tmp_path, yolov5n_pt, assets):
    out = tmp_path / "audit.json"
    code, printed = _audit(capsys, yolov5n_pt, assets / "images" / "zidane.jpg", "--config", "batch=1",
                           "--config", "backend=onnxruntime,batch=2", "--repeat", "2", "--deterministic", "--json", out)
    report = json.loads(out.read_text())
    assert code == 0
    assert report["reference"]["run_to_run_identical"] is True and report["configs"][0]["run_to_run_identical"] is True
    assert report["deterministic_settings"]["cudnn.deterministic"] == "True"
    assert "deterministic settings:" in printed.out


@pytest.mark.unit
@pytest.mark.parametrize("text,message", [
    ("colour=red", "unknown key 'colour'"),
    ("backend=tensorflow", "backend must be one of"),
    ("batch=zero", "batch must be a whole number"),
    ("batch=0", "batch must be >= 1"),
    ("mode=wide", "mode must be one of"),
    ("batch", "'batch' is neither key=value nor a backend"),
    ("torhc:fp32", "accepted: key=value pairs"),
])
def test_bad_specs_are_named(text, message):
    with pytest.raises(SpecError, match=message):
        parse_config(text)


@pytest.mark.unit
def test_the_short_form_names_values_alone():
    assert parse_config("torch:fp32") == parse_config("backend=torch,precision=fp32")
    assert parse_config("openvino:bf16:square,batch=8") == parse_config("backend=openvino,precision=bf16,mode=square,batch=8")
    assert parse_config("torch:cuda:1").device == "cuda:1"


def test_bad_spec_on_the_command_line_exits_2(capsys, yolov5n_pt, assets):
    code, printed = _audit(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--config", "batch=1", "--config", "speed=max")
    assert code == 2 and "unknown key 'speed'" in printed.err and "Traceback" not in printed.err


def test_config_of_another_network_is_refused(capsys, tmp_path, yolov5n_pt, assets):
    import yoloparity

    other = yoloparity.export(str(assets / "models" / "yolov8n-random.pt"), str(tmp_path / "v8.onnx"))
    code, printed = _audit(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--config", "batch=1",
                           "--config", f"backend=onnxruntime,model={other}")
    assert code == 2 and "runs a different network" in printed.err


@pytest.mark.unit
def test_matching_is_one_to_one_by_class_and_iou():
    from yoloparity.auditing.match import match
    from yoloparity.types import Detections

    a = Detections(np.float32([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]]), np.float32([0.9, 0.8, 0.7]), np.int32([0, 0, 1]))
    b = Detections(np.float32([[1, 1, 10, 10], [0, 0, 10, 10]]), np.float32([0.85, 0.6]), np.int32([0, 0]))
    m = match(a, b)
    assert m.pairs == [(0, 1, 1.0)]  # the best IoU wins, not the first box
    assert m.only_a == [1, 2] and m.only_b == [0]  # other classes never match


def _record(tmp_path, name, model, *sources_and_flags):
    import subprocess
    import sys

    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "yoloparity", "predict", str(model), *map(str, sources_and_flags),
                           "--save-record", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_compare_records_from_processes_with_different_threads(capsys, tmp_path, yolov5n_pt, assets):
    a = _record(tmp_path, "a", yolov5n_pt, assets / "images", "--threads", "1")
    b = _record(tmp_path, "b", yolov5n_pt, assets / "images", "--threads", "2")
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["verdict"] == "pass" and report["real"] == 0 and report["images"] == 2
    assert "settings.threads: 1 vs 2" in report["settings_differences"] and "differs: settings.threads: 1 vs 2" in printed
    record = json.loads(a.read_text())
    assert record["images"][0]["letterbox"]["input_hw"] == [640, 480] and record["environment"]["torch"]
    assert (tmp_path / "a.json.npz").exists() and record["raw_images"] == ["bus.jpg", "zidane.jpg"]


def test_compare_of_two_records_classifies_as_the_audit_of_the_same_runs(capsys, tmp_path, yolov5n_pt, yolov5n_onnx,
                                                                          coco_images):
    """One comparison: predict records of torch fp32 and of a file with one layer changed, compared offline, give
    the audit's differences (same detections, same real/borderline kinds, same localization)."""
    other = _perturbed_copy(yolov5n_onnx, tmp_path / "perturbed.onnx", "model.23.cv3.conv.weight")
    images = coco_images[:10]
    a = _record(tmp_path, "a", yolov5n_pt, *images, "--record-raw", 10)
    b = _record(tmp_path, "b", other, *images, "--record-raw", 10, "--batch", 3)
    cmp_out, audit_out = tmp_path / "cmp.json", tmp_path / "audit.json"
    main(["compare", str(a), str(b), "--json", str(cmp_out)])
    _audit(capsys, yolov5n_pt, *images, "--config", "batch=1", "--config", f"backend=onnxruntime,model={other}",
           "--json", audit_out)
    compared, [audited] = json.loads(cmp_out.read_text()), json.loads(audit_out.read_text())["configs"]
    assert compared["raw_images_compared"] == 10 and compared["images_differing"] > 0 and compared["verdict"] == "fail"

    def key(d):
        return (d["file"].rsplit("/", 1)[-1], d["side"], d["class_id"], d["score"], d["kind"])
    assert sorted(map(key, compared["differences"])) == sorted(map(key, audited["differences"]))
    for k in ("real", "borderline", "images_differing", "first_divergence", "per_class", "raw"):
        assert compared[k] == audited[k], k


def test_compare_refuses_records_of_different_models_or_images(capsys, tmp_path, yolov5n_pt, assets):
    a = _record(tmp_path, "a", yolov5n_pt, assets / "images" / "bus.jpg")
    b = _record(tmp_path, "b", yolov5n_pt, assets / "images" / "zidane.jpg")
    c = _record(tmp_path, "c", assets / "models" / "yolov8n-random.pt", assets / "images" / "bus.jpg")
    assert main(["compare", str(a), str(b)]) == 2
    assert "different image sets" in capsys.readouterr().err
    assert main(["compare", str(a), str(c)]) == 2
    assert "different models" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{}")
    assert main(["compare", str(a), str(tmp_path / "x.json")]) == 2
    assert "not a run record" in capsys.readouterr().err


def test_layers_names_the_perturbed_layer(capsys, tmp_path, yolov5n_onnx, yolov5n_pt, assets):
    weight = "model.4.cv1.conv.weight"
    bad = _perturbed_copy(yolov5n_onnx, tmp_path / "perturbed.onnx", weight)
    consumer = next(n.name for n in onnx.load(bad).graph.node if weight in n.input)
    out = tmp_path / "audit.json"
    code, printed = _audit(capsys, yolov5n_pt, assets / "images", "--config", f"backend=onnxruntime,model={yolov5n_onnx}",
                           "--config", f"backend=onnxruntime,model={bad}", "--layers", "--json", out)
    layer = json.loads(out.read_text())["configs"][0]["layer_divergence"]
    assert code == 1 and layer["layer"] == "model.4"  # layers 0-3 agree exactly, the perturbed one is named
    assert [p["max_abs"] for p in layer["profile"][:4]] == [0.0] * 4
    assert layer["node"] == consumer and layer["op"] == "Conv" and layer["index"] > 0
    assert f"first divergent layer: model.4, node {consumer} (Conv)" in printed.out


def _fp16_copy(onnx_path: str, dst) -> str:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(onnx_path), keep_io_types=True), str(dst))
    return str(dst)


def test_layers_run_on_each_configurations_own_backend(capsys, tmp_path, yolov5n_pt, yolov5n_onnx, coco_images):
    """torch fp32 (captured by forward hooks) vs an fp16 file on ONNX Runtime: fp16 weights differ from the first
    convolution on, and that is the layer named — not a comparison of one export with itself."""
    fp16 = _fp16_copy(yolov5n_onnx, tmp_path / "fp16.onnx")
    out = tmp_path / "audit.json"
    code, printed = _audit(capsys, yolov5n_pt, *coco_images[:12], "--config", "batch=1",
                           "--config", f"backend=onnxruntime,model={fp16}", "--layers", "--json", out)
    [cfg] = json.loads(out.read_text())["configs"]
    assert cfg["label"].startswith("onnxruntime cpu fp16 b1 rect")  # the file's precision, not the request's
    layer = cfg["layer_divergence"]
    assert layer["backends"] == ["torch", "onnxruntime"] and layer["layer"] == "model.0"
    assert layer["layers_compared"] == 25 and "first divergent layer: model.0 (torch vs onnxruntime)" in printed.out


def test_layer_capture_measures_torch_against_onnxruntime(yolov5n_pt, yolov5n_onnx, assets):
    """Same network, several runtimes: each backend's layers are captured from its own run (the last layer is the
    raw output that backend computes, bit for bit), and torch and ONNX Runtime differ in no layer beyond tolerance."""
    import cv2
    import numpy as np

    from yoloparity import load_model
    from yoloparity.auditing.layer_diff import ATOL, RTOL, first_divergent_layer

    torch_model, ort_model = load_model(yolov5n_pt), load_model(yolov5n_onnx)
    x = torch_model.predictor(batch=1).prepare(cv2.imread(str(assets / "images" / "bus.jpg")))[0][None]
    for model in (torch_model, ort_model, load_model(yolov5n_onnx, backend="openvino")):
        layers = model.backend.layer_outputs(x)
        assert [name for name, _ in layers] == [f"model.{i}" for i in range(25)]
        assert np.array_equal(layers[-1][1], model.raw(x).astype(np.float64))
    found = first_divergent_layer(torch_model.backend, ort_model.backend, x, x)
    assert found["layer"] is None and found["layers_compared"] == 25
    assert found["tolerance"] == {"atol": ATOL, "rtol": RTOL} and all(p["max_abs"] is not None for p in found["profile"])
    same = first_divergent_layer(torch_model.backend, torch_model.backend, x, x)
    assert same["layer"] is None and all(p["max_abs"] == 0.0 for p in same["profile"])


def test_int8_static_file_is_labelled_int8_square_with_a_note(capsys, tmp_path, yolov5n_pt, assets):
    """An int8 file with a static 640x640 input is labelled from the file, and the rect reference gets a suggestion."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import yoloparity

    static = yoloparity.export(yolov5n_pt, str(tmp_path / "static.onnx"))
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(static, str(int8), weight_type=QuantType.QUInt8)
    out = tmp_path / "audit.json"
    _audit(capsys, yolov5n_pt, assets / "images" / "bus.jpg", "--config", "batch=1",
           "--config", f"backend=onnxruntime,model={int8}", "--json", out)
    report = json.loads(out.read_text())
    [cfg] = report["configs"]
    assert cfg["label"].startswith("onnxruntime cpu int8 b1 square 640")
    assert cfg["config"]["precision"] == "int8" and cfg["config"]["mode"] == "square"
    assert any("--reference mode=square,imgsz=640" in n for n in report["notes"])


def test_html_report_is_self_contained_and_renders_in_chromium(capsys, tmp_path, yolov5n_pt, assets):
    import re
    import shutil
    import subprocess

    page = tmp_path / "audit.html"
    code, _ = _audit(capsys, yolov5n_pt, assets / "images", "--config", "mode=rect", "--config", "mode=square",
                     "--config", "backend=onnxruntime", "--html", page)
    text = page.read_text()
    assert code == 1 and "FAIL" in text and "data:image/jpeg;base64," in text and "<svg" in text
    assert not re.search(r'(src|href)="https?://', text)  # no network resources
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed here (.ci/run installs it)")
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-rendered="1"' in proc.stdout  # the page's script ran
    dom = proc.stdout
    svgs = re.findall(r"<svg.*?</svg>", dom, re.S)
    assert len(svgs) >= 3 and all('id="legend-' in svg for svg in svgs)  # every chart rendered with its legend
    legends = re.findall(r'id="legend-\d+".*?</g>\s*</g>', dom, re.S)
    assert any("matched detections" in legend for legend in legends)  # legend text is text, whole
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


@pytest.mark.slow
def test_val_records_compare_across_process_counts(capsys, tmp_path, yolov5n_pt, assets):
    from conftest import subset_dataset

    data = subset_dataset(assets, tmp_path / "mini", 12)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["val", yolov5n_pt, data, "--save-record", str(a), "--quiet", "--run-dir", str(tmp_path / "ra")]) == 0
    assert main(["val", yolov5n_pt, data, "--save-record", str(b), "--quiet", "--workers", "2", "--batch", "4",
                 "--run-dir", str(tmp_path / "rb")]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert "0 differing" in printed and "settings.processes: 1 vs 2" in printed
    record = json.loads(a.read_text())
    assert record["command"] == "val" and record["metrics"]["mAP50_95"] > 0 and record["images"][0]["letterbox"]["mapping"] == "ratio_pad"


def test_audit_with_data_reports_map_deltas(capsys, tmp_path, yolov5n_pt, coco_images, assets):
    out = tmp_path / "audit.json"
    data = assets / "coco-val-mini" / "data.yaml"
    code, printed = _audit(capsys, yolov5n_pt, *coco_images[:8], "--config", "batch=1", "--config", "backend=onnxruntime",
                           "--config", "mode=square", "--data", data, "--tolerance", "map_delta=0.0", "--json", out)
    report = json.loads(out.read_text())
    assert report["map"]["images"] == 8 and 0 < report["map"]["reference_mAP50_95"] < 1
    ort, square = report["configs"]
    assert abs(ort["mAP_delta"]) < 1e-3 and square["mAP_delta"] != 0.0
    assert code == 1 and not square["within_tolerance"] and "mAP50-95 on 8 labelled images" in printed.out


@pytest.mark.slow
def test_fp16_model_shows_real_differences_and_fails(capsys, tmp_path, yolov5n_pt, yolov5n_onnx, coco_images):
    """A different-precision model (an fp16 copy of our export, fp32 inputs and outputs) is not noise."""
    fp16 = _fp16_copy(yolov5n_onnx, tmp_path / "fp16.onnx")
    out = tmp_path / "audit.json"
    code, _ = _audit(capsys, yolov5n_pt, *coco_images[:48], "--config", f"backend=onnxruntime,model={yolov5n_onnx}",
                     "--config", f"backend=onnxruntime,model={fp16}", "--json", out)
    [cfg] = json.loads(out.read_text())["configs"]
    assert code == 1 and cfg["real"] > 0 and cfg["first_divergence"].get("model numerics", 0) > 0
    assert any(v["reference"] != v["config"] for v in cfg["per_class"].values())


def test_openvino_and_an_int8_tflite_in_one_audit(capsys, tmp_path, yolov5n_pt, yolov5n_onnx, assets, coco_images):
    """OpenVINO fp32 agrees with the torch reference; the int8 TFLite's differences are measured, not hidden; and
    OpenVINO on its own default precision ("runtime": bf16 on CPUs with AVX512-BF16 or AMX) sits beside fp32, each
    configuration saying what it computed in, read back from the compiled model."""
    import openvino as ov_runtime

    out = tmp_path / "audit.json"
    tflite = assets / "models" / "yolov5n-int8.tflite"
    code, printed = _audit(capsys, yolov5n_pt, *coco_images[:6], "--config", "mode=square",
                           "--config", f"backend=openvino,mode=square,model={yolov5n_onnx}",
                           "--config", f"backend=litert,model={tflite}",
                           "--config", f"backend=openvino,mode=square,precision=runtime,model={yolov5n_onnx}",
                           "--json", out)
    report = json.loads(out.read_text())
    ov, lite, runtime = report["configs"]
    assert ov["real"] == 0 and ov["raw"]["max_abs"] < 0.05
    assert lite["raw"]["max_abs"] > 0.01  # int8: real numeric differences, and they are reported
    real = ov["real"] or lite["real"] or runtime["real"]
    assert code == (1 if real else 0) and "litert" in printed.out  # the verdict follows the counts
    default = ov_runtime.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    default = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(default, default)
    assert ov["config"]["computes"]["computes"] == "fp32" and ov["config"]["computes"]["runtime_default"] == default
    assert runtime["config"]["computes"]["computes"] == default and "computed in" in printed.out
    if default != "fp32":  # what the default changes: more than float32's own noise
        assert runtime["raw"]["max_abs"] > 5 * ov["raw"]["max_abs"]


def test_fp64_configuration_gives_every_run_its_distance_to_the_truth(capsys, tmp_path, yolov5n_pt, yolov5n_onnx,
                                                                      coco_images):
    """Three runs disagree (torch fp32, ONNX Runtime fp32, an fp16 file): the float64 run says which is nearer the truth."""
    fp16 = _fp16_copy(yolov5n_onnx, tmp_path / "fp16.onnx")
    out, page = tmp_path / "audit.json", tmp_path / "audit.html"
    _, printed = _audit(capsys, yolov5n_pt, *coco_images[:16], "--config", "batch=1", "--config", "precision=fp64",
           "--config", f"backend=onnxruntime,model={yolov5n_onnx}", "--config", f"backend=onnxruntime,model={fp16}",
           "--json", out, "--html", page)
    report = json.loads(out.read_text())
    truth = report["truth"]
    assert truth["label"] == "torch cpu fp64 b1 rect"
    runs = {r["label"].split(" b1")[0]: r for r in truth["runs"]}
    assert set(runs) == {"torch cpu fp32", "onnxruntime cpu fp32", "onnxruntime cpu fp16"}  # fp16: read from the file
    fp32_runs = [runs["torch cpu fp32"], runs["onnxruntime cpu fp32"]]
    assert all(0 < r["raw_max_abs"] < 1e-2 and r["real"] == 0 for r in fp32_runs)  # float32 noise only
    assert runs["onnxruntime cpu fp16"]["raw_max_abs"] > 10 * max(r["raw_max_abs"] for r in fp32_runs)
    assert runs["onnxruntime cpu fp16"]["detections_differing"] >= max(r["detections_differing"] for r in fp32_runs)
    fp64_cfg = next(c for c in report["configs"] if c["config"]["precision"] == "fp64")
    assert fp64_cfg["distance_to_fp64"] is None and fp64_cfg["raw"]["max_abs"] < 1e-2
    text = page.read_text()
    assert "Distance to the float64 truth" in text and "raw max |d| to fp64" in text
    assert "Distance to the float64 truth (torch cpu fp64 b1 rect)" in printed.out


def test_fp64_is_refused_off_the_torch_cpu_backend(capsys, yolov5n_pt, assets):
    code, captured = _audit(capsys, yolov5n_pt, assets / "images", "--config", "batch=1",
                            "--config", "backend=onnxruntime,precision=fp64")
    assert code == 2 and "precision=fp64" in captured.err and "backend=torch" in captured.err


@pytest.mark.unit
def test_charts_read_right_at_the_edges():
    """matplotlib's SVG: an axis that resolves IoUs all above 0.999, a whole legend, an empty state that says why."""
    import re

    from yoloparity.report import charts

    svg = charts.histogram("IoU of matched detections", [0.9991, 0.9995, 0.99993, 0.99999], "matched detections", "IoU")
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)  # text stays text in the SVG
    ticks = [t for t in texts if re.fullmatch(r"[01]\.\d+", t)]
    assert len(set(ticks)) >= 3 and all(t.startswith(("0.999", "1.000")) for t in ticks)  # not "1 ... 1"
    assert 'id="legend-' in svg and "4 matched detections" in svg and "min 0.9991" in svg
    wide = charts.bars("detections per class", ["person", "bus"], {"a very long configuration label, kept whole": [3, 1],
                                                                   "reference": [3, 0]})
    assert "a very long configuration label, kept whole" in wide and 'id="legend-' in wide
    assert "every value is 0" in charts.bars("detections differing from fp64", ["a", "b"], {"d": [0.0, 0.0]})
    assert "no matched detections" in charts.histogram("score delta", [], "matched detections", "delta")
    assert "no configuration has both values" in charts.scatter("speed", [], "x", "y")
