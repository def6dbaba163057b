"""The ONNX Runtime backend reads our exports and those of the YOLOv5 and Ultralytics exporters."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import yoloparity
from yoloparity.errors import BackendUnavailableError


def _rewrite(src: str, dst, metadata: dict[str, str], extra_output: bool = False) -> str:
    model = onnx.load(src)
    del model.metadata_props[:]
    for k, v in metadata.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    if extra_output:  # YOLOv5 exports may carry more outputs than output0; put one first
        model.graph.node.append(helper.make_node("Identity", ["output0"], ["extra"]))
        extra = helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, None)
        outputs = [extra] + list(model.graph.output)
        del model.graph.output[:]
        model.graph.output.extend(outputs)
    onnx.save(model, str(dst))
    return str(dst)


@pytest.fixture(scope="module")
def static_v5(yolov5n_pt, tmp_path_factory):
    return yoloparity.export(yolov5n_pt, str(tmp_path_factory.mktemp("s") / "y5.onnx"))


def test_export_embeds_the_spec(static_v5, yolov5n_pt):
    model = yoloparity.load_model(static_v5, backend="onnxruntime")
    torch_model = yoloparity.load_model(yolov5n_pt)
    assert model.spec.head_format == "v5" and model.spec.names == torch_model.spec.names
    assert model.spec.sha256 == torch_model.spec.sha256
    meta = {p.key: p.value for p in onnx.load(static_v5).metadata_props}
    assert meta["stride"] == "32" and meta["imgsz"] == "[640, 640]"


def test_yolov5_exporter_layout_with_extra_outputs(static_v5, tmp_path, assets):
    names = repr({i: n for i, n in enumerate(yoloparity.load_model(static_v5, backend="onnxruntime").spec.names)})
    path = _rewrite(static_v5, tmp_path / "v5style.onnx", {"stride": "32", "names": names}, extra_output=True)
    model = yoloparity.load_model(path, backend="onnxruntime")
    assert model.spec.head_format == "v5" and model.spec.names[0] == "person" and model.spec.family == "yolov5"
    [r] = model.predict(str(assets / "images" / "bus.jpg"), mode="square")
    assert r.detections.counts_per_class() == {0: 3, 5: 1}  # the reference square result (golden)


def test_ultralytics_exporter_metadata(yolov5n_pt, tmp_path, assets):
    src = yoloparity.export(str(assets / "models" / "yolov8n-random.pt"), str(tmp_path / "v8.onnx"))
    names = repr({i: f"thing{i}" for i in range(80)})
    path = _rewrite(src, tmp_path / "ultra.onnx", {"names": names, "stride": "32", "imgsz": "[640, 640]", "task": "detect", "batch": "1"})
    model = yoloparity.load_model(path, backend="onnxruntime")
    assert model.spec.head_format == "v8" and model.spec.names[3] == "thing3" and model.spec.imgsz == (640, 640)
    x = np.load(assets / "golden" / "yolov8n_zidane.npz")
    truth = np.load(assets / "golden" / "fp64" / "yolov8n_zidane.npz")["output64"]  # the same on every CPU
    assert np.abs(model.raw(x["input"]) - truth).max() < 5e-3  # float32 noise here: ~1e-3 px (golden/README.md)


def test_metadata_free_file_is_read_from_its_output_shape(static_v5, tmp_path):
    path = _rewrite(static_v5, tmp_path / "bare.onnx", {})
    model = yoloparity.load_model(path, backend="onnxruntime")
    assert model.spec.head_format == "v5" and model.spec.nc == 80


def test_a_batch_of_one_file_runs_any_batch_image_by_image_and_a_bigger_static_batch_is_refused(static_v5, yolov5n_pt,
                                                                                                 assets, tmp_path):
    """On the CPU a static batch-1 file takes any batch, each image its own single-threaded run, in parallel: the
    batch's output is bitwise the images' own run alone (a lone image runs on a session of two intra-op threads: the
    same bits), and the predictor keeps the asked batch; a file whose static batch is above 1 still refuses another
    batch, naming it."""
    from yoloparity.data.sources import read_image
    from yoloparity.pipeline.letterbox import letterbox, to_input
    from yoloparity.settings import InferenceSettings

    model = yoloparity.load_model(static_v5, backend="onnxruntime", threads=2)
    images = sorted((assets / "coco-val-mini" / "images").glob("*.jpg"))[:3]
    batch = np.stack([to_input(letterbox(read_image(str(p)), 640, "square")[0]) for p in images])
    together = model.raw(batch)
    assert model.backend._lone_session is None  # a batch runs image by image on single-threaded runs
    assert np.array_equal(together, np.concatenate([model.raw(batch[i:i + 1]) for i in range(len(images))]))
    assert model.backend._lone_session.get_session_options().intra_op_num_threads == 2
    settings, notes = model.resolve(InferenceSettings(batch=16))
    assert settings.batch == 16 and not any("static batch" in n for n in notes)
    batch_of_two = yoloparity.load_model(yoloparity.export(yolov5n_pt, str(tmp_path / "b2.onnx"), batch=2),
                                         backend="onnxruntime")
    with pytest.raises(BackendUnavailableError, match="static input batch of 2 but was given 3"):
        batch_of_two.raw(batch)
    assert np.array_equal(batch_of_two.raw(batch[:2]), together[:2])


def test_cuda_device_without_cuda_is_a_clear_error(static_v5, yolov5n_pt):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        yoloparity.load_model(yolov5n_pt, device="cuda:0")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        yoloparity.load_model(static_v5, backend="onnxruntime", device="cuda:0")


def test_checkpoint_on_onnxruntime_is_exported_once_into_the_cache(yolov5n_pt, assets):
    import os

    model = yoloparity.load_model(yolov5n_pt, backend="onnxruntime")
    assert model.path.startswith(os.environ["YOLOPARITY_CACHE"]) and model.path.endswith("-dynamic.onnx")
    again = yoloparity.load_model(yolov5n_pt, backend="onnxruntime")
    assert again.path == model.path
    [r] = model.predict(str(assets / "images" / "zidane.jpg"))
    assert r.detections.counts_per_class() == {0: 2, 27: 1}


@pytest.mark.unit
@pytest.mark.parametrize("shape, hw, expected", [
    ([1, 300, 6], (640, 640), ("dets", 80)), ([1, 300, 6], (None, None), ("dets", 80)),
    ([1, "a", 6], (None, None), ("v5", 1)),  # a dynamic row count with 6 channels: a 1-class YOLOv5 head, not dets
    ([1, 84, "a"], (None, None), ("v8", 80)),  # a dynamic anchor dim: the static one is the channel dim
    ([1, "a", 85], (None, None), ("v5", 80)), ([1, 25200, 85], (640, 640), ("v5", 80)),
    ([1, 25200, 85], (None, None), ("v5", 80)), ([1, 84, 8400], (640, 640), ("v8", 80)),
])
def test_the_head_format_is_read_from_the_output_shape(shape, hw, expected):
    """Files without our metadata: the one format whose layout fits (the head-format objects decide it)."""
    from yoloparity.backends.metadata import infer_head

    assert infer_head("m.onnx", shape, hw, None) == expected


def test_a_file_s_precision_is_read_once_and_again_when_the_file_changes(static_v5, tmp_path, monkeypatch):
    """The precision read from an ONNX graph is cached under the file's identity (importing onnx costs ~0.85 s of
    CPU per process): an unchanged file is answered without reading it, a rewritten one is read again."""
    import shutil

    from yoloparity.backends.metadata import onnx_file_precision

    monkeypatch.setenv("YOLOPARITY_CACHE", str(tmp_path / "cache"))
    path = str(tmp_path / "m.onnx")
    shutil.copy(static_v5, path)
    assert onnx_file_precision(path) == "fp32"
    with monkeypatch.context() as m:
        m.setattr(onnx, "load", lambda *a, **k: pytest.fail("an unchanged file was read again"))
        assert onnx_file_precision(path) == "fp32"
    model = onnx.load(path)
    model.graph.node.append(helper.make_node("DequantizeLinear", ["output0", "s"], ["dq"]))  # a QDQ node: int8
    onnx.save(model, path)
    assert onnx_file_precision(path) == "int8"
