"""Every public API function leaves the calling process as it found it: torch's threads and switches, every
logger's level and handlers, the environment (docs/ARCHITECTURE.md: no function changes process state it does not restore).

Each call runs in this test process with torch at 3 threads (not the machine's default and not the 1 a worker
uses), so a setting left behind shows as a difference; loggers that a library creates on its first import are new,
not changed, and are not compared."""

from __future__ import annotations

import pytest

import yoloparity
from yoloparity.process_settings import process_snapshot


@pytest.fixture()
def calling_process():
    """torch at 3 threads for the test; the snapshot is compared after the call."""
    import torch

    before_threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)


def assert_unchanged(before: dict, after: dict) -> None:
    environ = {k: (before["environ"].get(k), after["environ"].get(k))
               for k in set(before["environ"]) | set(after["environ"]) if before["environ"].get(k) != after["environ"].get(k)}
    assert environ == {}
    assert after.get("torch") == before.get("torch")
    assert after["root"] == before["root"] and after["logging.disable"] == before["logging.disable"]
    changed = {name: (state, after["loggers"].get(name)) for name, state in before["loggers"].items()
               if after["loggers"].get(name) != state}
    assert changed == {}


@pytest.fixture()
def mini_data(tmp_path, assets):
    from conftest import subset_dataset

    return subset_dataset(assets, tmp_path / "mini", 4)


def _call(name: str, tmp_path, assets, pt: str, onnx: str, data: str):
    bus = str(assets / "images" / "bus.jpg")
    zidane = str(assets / "images" / "zidane.jpg")
    if name == "val threads=1":
        return yoloparity.val(pt, data, threads=1, batch=2, imgsz=320)
    if name == "val onnxruntime":
        return yoloparity.val(onnx, data, threads=1, batch=2, imgsz=320)
    if name == "predict":
        return yoloparity.predict(pt, [bus], imgsz=320)
    if name == "load_model + close":
        with yoloparity.load_model(onnx, threads=1) as model:
            return model.predict([bus], imgsz=320)
    if name == "predict_files":
        return yoloparity.predict_files(pt, [bus, zidane], imgsz=320, threads=1, run_dir=str(tmp_path / "run"))
    if name == "predict_files workers=2":
        return yoloparity.predict_files(onnx, [bus, zidane], workers=2, imgsz=320, run_dir=str(tmp_path / "run2"))
    if name == "predict_files ray":  # a static 320x320 file asked for 640: the actors' note reaches the summary
        static = yoloparity.export(pt, str(tmp_path / "static.onnx"), imgsz=320)
        summary = yoloparity.predict_files(static, [bus, zidane], engine="ray", workers=1, imgsz=640, threads=1)
        assert any("static 320x320 input" in note for note in summary.notes), summary.notes
        return summary
    if name == "audit deterministic":
        return yoloparity.audit(pt, [bus], ["batch=1,imgsz=320", "mode=square,imgsz=320"], deterministic=True)
    if name == "export":
        return yoloparity.export(pt, str(tmp_path / "m.onnx"), imgsz=320)
    if name == "compare":
        from yoloparity.cli import main

        for tag in ("a", "b"):
            assert main(["predict", onnx, bus, "--imgsz", "320", "--save-record", str(tmp_path / f"{tag}.json"),
                         "--quiet", "--run-dir", str(tmp_path / f"r{tag}")]) == 0
        return yoloparity.compare(str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    if name == "quantize":
        return yoloparity.quantize(onnx, data, str(tmp_path / "q.onnx"), calib_images=2, val_images=2, imgsz=320,
                                   max_steps=0, latency_repeats=1, saturation="report", saturation_images=1)
    if name == "bench":
        return yoloparity.bench(pt, backends=("torch", "onnxruntime"), batches=(1,), imgsz=320, repeats=1, images=2,
                               source=str(assets / "images"))
    raise AssertionError(name)


CALLS = ["val threads=1", "val onnxruntime", "predict", "load_model + close", "predict_files", "audit deterministic",
         "export", "compare"]
SLOW_CALLS = ["predict_files workers=2", "predict_files ray", "quantize", "bench"]  # the full suite (CI) runs them


@pytest.mark.parametrize("name", CALLS + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW_CALLS])
def test_public_functions_leave_the_process_unchanged(name, calling_process, tmp_path, monkeypatch, assets, yolov5n_pt,
                                                      yolov5n_onnx, mini_data):
    monkeypatch.chdir(tmp_path)
    if "ray" in name:
        pytest.importorskip("ray")  # before the snapshot: what importing ray does is the test's, not the call's
    before = process_snapshot()
    result = _call(name, tmp_path, assets, yolov5n_pt, yolov5n_onnx, mini_data)
    assert result is not None
    assert_unchanged(before, process_snapshot())
