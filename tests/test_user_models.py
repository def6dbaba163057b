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
        with yoloparity.load_model(str(user / "models" / case["model"]), head_branch=head) as m:
            dets = m.predict(str(user / case["image"]))[0].detections
        assert len(dets) == len(z["scores"]), case["npz"]
        order = np.argsort(-dets.scores, kind="stable")
        # the reference's own float32 output moves this much between an AVX-512 and an AVX2 CPU (golden/README.md,
        # test_golden.REFERENCE_FP32_SPREAD: up to 1.9e-2 px and 9.4e-5 in score), not a figure of this CPU; the
        # lowest golden score (0.266) is far from the 0.25 threshold, so no near-tie can add or drop a box
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


# --- val prints the figure the user's own tool prints ------------------------------------------------------------

def _reference_entries(user_root):
    entries = json.loads((user_root / "reference-val-user.json").read_text())["entries"]
    return [e for e in entries if e["batch"] == 1 and e["imgsz"] == 320]


def _case_id(entry) -> str:
    return entry["file"].split("/")[-1] + ("-nms-false" if "nms=False" in entry["call"] else "")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["v8n-ds3-best.pt", "v8n-ds3-last.pt", "yolo26n-ds3-best.pt",
                                  "yolo26n-ds3-best.pt-nms-false", "v5n-ds3-best.pt"])
def test_val_prints_what_the_trainers_val_prints_at_batch_1_and_16(user, case):
    """The reference's batch-1 figure (its validators' rect batches move the figure with the batch size; ours do not),
    by the trainer's own metric (no COCO json here), at our batch 1 and 16; YOLO26 with both heads."""
    entry = next(e for e in _reference_entries(user) if _case_id(e) == case)
    head = None
    if case.startswith("yolo26"):
        head = "one2one" if "nms-false" in case else "one2many"  # 8.4.190's default is one2many + NMS
    data = str(user / "ds3" / "data.yaml")
    for batch in (1, 16):
        options = {"head_branch": head} if head else {}
        report = yoloparity.val(str(user / entry["file"]), data, batch=batch, **options)
        assert report.metric == ("yolov5" if case.startswith("v5") else "ultralytics")
        assert report.settings["imgsz"] == 320  # the training size, by default
        got = report.headline
        assert abs(got["mAP50_95"] - entry["mAP50_95"]) < 5e-5, (batch, got, entry["mAP50_95"])
        assert abs(got["mAP50"] - entry["mAP50"]) < 5e-5, (batch, got, entry["mAP50"])
        assert abs(got["precision"] - entry["precision"]) < 1e-4 and abs(got["recall"] - entry["recall"]) < 1e-4
        command = report.reference["command"]
        assert "imgsz=320 batch=1" in command or "--img 320 --batch-size 1" in command
        assert ("nms=False" in command) == ("nms-false" in case)
    # the tolerance above is the reference's offset, not this CPU's noise: our figure is the float64 network's
    # (the exact function, the same on every CPU) to well under it (measured here: <= 6e-7)
    exact = yoloparity.val(str(user / entry["file"]), data, batch=16, precision="fp64", **options).headline
    assert all(abs(got[k] - exact[k]) < 1e-5 for k in got), (got, exact)
    # the COCO protocol is computed too, and --metric makes it the headline
    coco = yoloparity.val(str(user / entry["file"]), data, metric="coco", **options)
    assert coco.metric == "coco" and coco.headline["mAP50_95"] == coco.metrics.mAP50_95 != got["mAP50_95"]
    assert "save_json=True" in coco.reference["command"] or "--save-json" in coco.reference["command"]


@pytest.mark.unit
def test_trainer_matching_keeps_each_labels_most_confident_prediction_not_a_greedy_assignment():
    from yoloparity.evaluate.trainer_metrics import match_predictions, summarize

    labels = np.array([[0, 0, 10, 10], [8, 0, 18, 10]], np.float32)
    # prediction 0 (most confident) and 1 both overlap label 0 best; prediction 1 also overlaps label 1, less
    preds = np.array([[0, 0, 10, 9], [1, 0, 11, 10], [30, 30, 40, 40]], np.float32)
    tp = match_predictions(preds, np.zeros(3, np.int64), labels, np.zeros(2, np.int64))
    assert tp[:, 0].tolist() == [True, False, False]  # label 1 stays unmatched: it is nobody's first choice
    for metric in ("ultralytics", "yolov5"):  # a perfect detector: the trainers' well-known 0.995 (the envelope
        # drops to 0 at recall 1 itself, so the last trapezoid of the 101-point grid counts half)
        perfect = summarize(np.ones((2, 10), bool), np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64),
                            np.zeros(2, np.int64), ("thing",), metric, 1)
        assert perfect.mAP50_95 == pytest.approx(0.995) and perfect.mAP50 == pytest.approx(0.995)
        assert perfect.precision == pytest.approx(1.0) and perfect.recall == pytest.approx(1.0, abs=1e-6)
    nothing = summarize(np.zeros((1, 10), bool), np.array([0.9], np.float32), np.zeros(1, np.int64),
                        np.zeros(1, np.int64), ("thing",), "yolov5", 1)
    assert nothing.mAP50_95 == 0.0 and nothing.per_class["thing"]["instances"] == 1


# --- one default per setting: the training size in every backend --------------------------------------------------

@pytest.mark.slow
def test_every_backend_defaults_to_the_training_size_and_agrees(user):
    model = str(user / "models" / "v8n-ds3-best.pt")
    report = yoloparity.audit(model, str(user / "ds3" / "images" / "val"),
                              ["backend=torch", "backend=onnxruntime", "backend=openvino"]).report
    assert report.verdict.passed, report.verdict.reasons
    assert all(c.real == 0 for c in report.configs)
    for backend in ("torch", "onnxruntime", "openvino"):
        with yoloparity.load_model(model, backend=backend) as m:
            assert m.spec.imgsz == (320, 320) and "train_args" in m.spec.imgsz_from


# --- quantize uses the dataset as a trainer would ------------------------------------------------------------------

def test_quantize_calibrates_on_the_train_split_and_judges_on_all_of_val(user, assets):
    from yoloparity.quantization.image_set import describe, overlap_notes, read_images
    from yoloparity.quantization.runner import QuantizeOptions

    with yoloparity.load_model(str(user / "models" / "v8n-ds3-best.pt")) as m:
        spec = m.spec
    lines = []
    images = read_images(str(user / "ds3" / "data.yaml"), spec, QuantizeOptions(imgsz=320), lines.append, None)
    assert images.calibration_split == "train" and len(images.calibration) == 81  # all of train: 128 asked for
    assert all("/train/" in q.entry.path for q in images.calibration)
    assert len(images.held_out) == 34 and images.measured == images.held_out and not images.overlap
    assert "81 calibration images from the train split; 34 val images held out" in describe(images)
    assert any("the train split has 81" in n for n in overlap_notes(images))
    # coco-val-mini lists the same images as train and val: its val split is cut in two, and said so
    coco = read_images(str(assets / "coco-val-mini" / "data.yaml"), spec,
                       QuantizeOptions(imgsz=320, calib_images=4, val_images=6), lines.append, None)
    assert coco.calibration_split == "val" and "no train split of its own" in describe(coco)


@pytest.mark.slow
def test_a_fine_tune_quantizes_to_full_integer_tflite_with_uint8_input(user, tmp_path, capsys):
    """``--tflite-input uint8`` (runtimes that want unsigned input) end to end on a fine-tune: the range step feeds
    the file its own input type (it cast to int8 and failed), the report locates the error, and the file reads back
    with the fine-tune's 3 classes and a uint8 input."""
    from conftest import require_tflite_converter

    from yoloparity.cli import main

    require_tflite_converter()
    out, report = tmp_path / "v8ft-u8.tflite", tmp_path / "r.json"
    code = main(["quantize", str(user / "models" / "v8n-ds3-best.pt"), "--data", str(user / "ds3" / "data.yaml"),
                 "--format", "tflite-int8", "--tflite-input", "uint8", "--imgsz", "160", "--calib-images", "8",
                 "--val-images", "16", "--bootstrap", "20", "--out", str(out), "--json", str(report), "--quiet"])
    r = json.loads(report.read_text())
    assert code == (0 if r["within_budget"] else 3), capsys.readouterr().err[-2000:]
    assert any('"input": "uint8"' in n for n in r["notes"]) and any("narrowed to the 99.999" in n for n in r["notes"])
    assert r["int8_map50_95"] > 0.5 * r["float_map50_95"] > 0  # the int8 file detects what the float one does
    assert len(r["int8_error"]["maps"]) == 6 and all(0 < m["sqnr_db"] < 80 for m in r["int8_error"]["maps"])
    with yoloparity.load_model(str(out)) as model:
        assert model.backend.in_dtype.name == "uint8" and model.spec.nc == 3 and model.spec.imgsz == (160, 160)


# --- names vs classes, file modes, model folders -------------------------------------------------------------------

def _data_yaml(tmp_path, user, names: list[str]) -> str:
    text = "path: " + str(user / "ds3") + "\ntrain: images/train\nval: images/val\nnames:\n"
    text += "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    path = tmp_path / f"data{len(names)}.yaml"
    path.write_text(text)
    return str(path)


def test_names_that_do_not_cover_the_models_classes_stop_before_any_work(user, tmp_path, capsys):
    from yoloparity.cli import main

    model = str(user / "models" / "v8n-ds3-best.pt")
    code = main(["val", model, _data_yaml(tmp_path, user, ["person", "car"]), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "names 2 classes but the model predicts 3" in err[0]
    code = main(["val", model, _data_yaml(tmp_path, user, ["person", "car", "dog", "cat"]), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "names 4 classes but the model predicts 3" in captured.err


@pytest.mark.unit
def test_written_files_get_the_mode_the_umask_gives(tmp_path):
    import os

    from yoloparity.io.atomic import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def test_an_ultralytics_openvino_folder_is_a_model_path(user, tmp_path, capsys):
    """What `yolo export format=openvino` writes: NAME.xml, NAME.bin and metadata.yaml (names, imgsz) in a folder.
    It runs in f32 as asked, and the run says so beside what OpenVINO would have computed in by its own default on
    this CPU (bf16 where the CPU has AVX512-BF16 or AMX): read back from the compiled models, ours and a default one."""
    import onnx
    import openvino as ov
    import yaml

    from yoloparity.backends.compute_precision import openvino_type
    from yoloparity.errors import ModelFileError

    pt = str(user / "models" / "v8n-ds3-best.pt")
    onnx_path = yoloparity.export(pt, str(tmp_path / "v8n.onnx"))
    plain = onnx.load(onnx_path)
    del plain.metadata_props[:]  # nothing of ours: only what the folder's metadata.yaml says
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    folder = tmp_path / "v8n-ds3-best_openvino_model"
    folder.mkdir()
    ov.save_model(ov.convert_model(str(tmp_path / "plain.onnx")), str(folder / "v8n-ds3-best.xml"))
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"stride": 32, "task": "detect", "batch": 1, "imgsz": [320, 320],
                                                          "names": {0: "person", 1: "car", 2: "dog"}}))
    images = sorted(str(p) for p in (user / "ds3" / "images" / "val").glob("*.jpg"))[:4]
    xml = str(folder / "v8n-ds3-best.xml")
    with yoloparity.load_model(str(folder)) as m, yoloparity.load_model(xml) as same:
        assert m.path == xml and m.backend.name == "openvino" and m.spec.names == NAMES and m.spec.imgsz == (320, 320)
        got, want = m.predict(images), same.predict(images)
        assert sum(len(r.detections) for r in got) > 0
        for a, b in zip(got, want):  # the folder is its file: the same detections, exactly
            assert np.array_equal(a.detections.boxes, b.detections.boxes)
            assert a.detections.class_ids.tolist() == b.detections.class_ids.tolist()
        computed = m.backend.compute_precision()
    default = ov.Core().compile_model(xml, "CPU").get_property("INFERENCE_PRECISION_HINT")  # no hint: the plugin's
    assert computed.computes == "fp32" and computed.runtime_default == openvino_type(default)
    assert "compiled model" in computed.source
    from yoloparity.cli import main

    assert main(["predict", str(folder), images[0], "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # ov.save_model stores the weights in fp16 (the file's precision); OpenVINO decompresses them and computes in f32
    assert summary["precision"] == "fp16" and summary["computes"] == computed.to_dict()
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        yoloparity.load_model(str(tmp_path))  # two .onnx files: which one?
