"""Every way in gives the same answer: for each kind of model file, the same images through the CLI, the Python API,
``predict_files`` on one process, two processes and Ray, val's predictor, the audit's capture and bench's worker give
identical detections. The settings are decided once (``YoloModel.resolve``) and carried unchanged, so a static file
(static ONNX, full-integer TFLite, OpenVINO IR) runs the same square input however it is called."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import yoloparity
from yoloparity.cli import main
from yoloparity.data.datasets import ImageEntry
from yoloparity.io.detections import to_rows
from yoloparity.settings import InferenceSettings

pytestmark = pytest.mark.slow

# YOLOv8n (trained) in every file kind, and a user's fine-tune (3 classes, trained at 320) on its own images
KINDS = ("pt", "onnx-dynamic", "onnx-static", "tflite-full-int8", "openvino-ir", "pt-fine-tuned")
# one set of settings for every entry point: square at the model's own size (no size given: what each entry point
# defaults to, and what a static file forces), two images per batch, the predictors' thresholds
STATIC_SIZE, BATCH, CONF = 640, 2, 0.25


@pytest.fixture(scope="module")
def files(assets, tmp_path_factory) -> dict[str, str]:
    """One file of each kind, all of YOLOv8n (trained weights), made once for the module."""
    import openvino as ov

    from yoloparity.yolo_model import cached_onnx_export

    out = tmp_path_factory.mktemp("kinds")
    pt = str(assets / "models" / "yolov8n-from-int8.pt")
    static = yoloparity.export(pt, str(out / "static.onnx"), imgsz=STATIC_SIZE)
    ov.save_model(ov.Core().read_model(static), str(out / "static.xml"))
    return {"pt": pt, "onnx-dynamic": cached_onnx_export(pt), "onnx-static": static,
            "tflite-full-int8": str(assets / "models" / "yolov8n_full_integer_quant.tflite"),
            "openvino-ir": str(out / "static.xml"), "pt-fine-tuned": str(assets / "user" / "models" / "v8n-ds3-best.pt")}


@pytest.fixture(scope="module")
def images(assets) -> dict[str, list[str]]:
    """Each model's images: bus (portrait) and zidane (landscape); two ds3 validation images for the fine-tune."""
    coco = sorted(str(p) for p in (assets / "images").glob("*.jpg"))
    ds3 = [str(assets / "user" / "ds3" / "images" / "val" / f) for f in ("000000151938.jpg", "000000217285.jpg")]
    return {kind: ds3 if kind == "pt-fine-tuned" else coco for kind in KINDS}


@pytest.fixture(scope="module")
def ray_session():
    """One Ray instance for every Ray call of the module (predict_files joins it instead of starting its own)."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra yoloparity[ray]")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _settings() -> InferenceSettings:
    return InferenceSettings(mode="square", batch=BATCH, conf=CONF)


def _rows(detections_by_file: dict[str, object], names) -> dict[str, list]:
    """Each image's detections as the rows every output writes (boxes to 3 decimals, scores to 5)."""
    return {f: to_rows(d, names) for f, d in detections_by_file.items()}


def _file_rows(path) -> dict[str, list]:
    return {row["file"]: row["detections"] for row in json.loads(open(path).read())}


def _in_process(model_path: str, images: list[str]) -> tuple[dict[str, dict], tuple[str, ...]]:
    """The detections of the entry points that return them, exactly (float32), by entry point then file."""
    from yoloparity.auditing.capture import ConfigRunner
    from yoloparity.auditing.spec import RunConfig
    from yoloparity.benchmarking.worker import predict_timed, timed_settings
    from yoloparity.evaluate.validator import ValOptions, predict_records

    out: dict[str, dict] = {}
    out["yoloparity.predict"] = {r.path: r.detections for r in yoloparity.predict(model_path, images, _settings())}
    with yoloparity.load_model(model_path) as model:
        out["load_model().predict"] = {r.path: r.detections for r in model.predict(images, mode="square", batch=BATCH,
                                                                                    conf=CONF)}
        val_settings = ValOptions(mode="square", batch=BATCH, conf=CONF, multi_label=False,
                                  preprocess="predict")
        records = predict_records(model.predictor(val_settings), [ImageEntry(k, p) for k, p in enumerate(images)])
        out["val's predictor"] = {r.file: r.detections for r in records}
        job = {"imgsz": None, "batch": BATCH, "images": images}
        out["bench's worker"] = {r.path: r.detections for r in predict_timed(model, job, timed_settings(model, job))}
        names, backend = model.spec.names, model.backend.name
    config = RunConfig(backend=backend, batch=BATCH, mode="square")
    with ConfigRunner(model_path, config, _settings().thresholds, None) as runner:
        stages = runner.run([(p, cv2.imread(p)) for p in images])
        out["audit's capture"] = {s.path: s.detections for s in stages}
    return out, names


@pytest.mark.parametrize("kind", KINDS)
def test_every_entry_point_gives_the_same_detections(kind, files, images, ray_session, tmp_path):
    model_path, images = files[kind], images[kind]
    exact, names = _in_process(model_path, images)
    reference = exact["load_model().predict"]
    # not vacuous: trained YOLOv8n finds people, a bus and a tie (8 here; its 6 above 0.75 leave margin on any CPU),
    # the weak 3-class fine-tune a few
    assert sum(len(d) for d in reference.values()) >= (1 if kind == "pt-fine-tuned" else 5)
    for entry, found in exact.items():
        assert sorted(found) == sorted(reference), entry
        for f, d in found.items():
            same = (np.array_equal(d.boxes, reference[f].boxes) and np.array_equal(d.scores, reference[f].scores)
                    and np.array_equal(d.class_ids, reference[f].class_ids))
            assert same, f"{kind}: {entry} differs from load_model().predict on {f}"

    rows = _rows(reference, names)
    written = {}
    cli_out = tmp_path / "cli.json"
    assert main(["predict", model_path, *images, "--square", "--batch", str(BATCH),
                 "--conf", str(CONF), "--save-json", str(cli_out), "--quiet"]) == 0
    written["CLI predict"] = _file_rows(cli_out)
    for label, extra in (("predict_files, 1 process", {}), ("predict_files, --workers 2", {"workers": 2}),
                         ("predict_files, Ray", {"engine": "ray", "workers": 2})):
        out = tmp_path / f"{len(written)}.json"
        summary = yoloparity.predict_files(model_path, images, _settings(), save_json=str(out), **extra)
        assert summary.images == len(images) and summary.precision and summary.reference, label
        written[label] = _file_rows(out)
    for label, found in written.items():
        assert found == rows, f"{kind}: {label} differs from load_model().predict"

