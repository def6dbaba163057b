"""The structure docs/ARCHITECTURE.md promises, measured from the source (scripts/architecture.py reads the floors
from that document) and from a real import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import architecture  # noqa: E402

MODULES = architecture.load_modules()


@pytest.mark.unit
def test_imports_only_go_down():
    assert architecture.upward_edges(MODULES) == []


@pytest.mark.unit
def test_the_floors_are_the_documents_and_every_unit_is_on_one():
    """The floors come from docs/ARCHITECTURE.md; every package unit of the source sits on exactly one of them."""
    floors = architecture.read_floors()
    assert floors == architecture.FLOORS and floors[0][0] == "types" and floors[-1][0] == "cli"
    placed = [unit for floor in floors for unit in floor]
    assert len(placed) == len(set(placed))
    for name in MODULES:
        architecture.floor_of(architecture.unit_of(name))  # raises for a unit on no floor


@pytest.mark.unit
def test_imports_inside_functions_only_for_heavy_or_optional_runtimes():
    """An import inside a function is there to keep a runtime (torch, onnxruntime, ray …) off the import path of
    commands that do not use it; any other belongs at the top of the module."""
    assert architecture.needless_function_imports(MODULES) == []


@pytest.mark.unit
def test_no_function_is_longer_than_the_limit():
    assert architecture.long_functions(MODULES) == []


@pytest.mark.unit
def test_every_public_name_has_a_docstring():
    assert architecture.public_without_docstring(MODULES) == []


@pytest.mark.unit
def test_every_package_says_what_it_holds():
    assert architecture.packages_without_docstring(MODULES) == []


@pytest.mark.unit
def test_the_floor_table_names_every_package():
    units = {architecture.unit_of(name) for name in MODULES}
    for unit in units:
        architecture.floor_of(unit)  # raises for a package docs/ARCHITECTURE.md's floors do not place


@pytest.mark.unit
def test_the_checker_sees_an_upward_import(tmp_path):
    """The checks above read real source: a module that imports a higher floor is found."""
    pkg = tmp_path / "yoloparity"
    (pkg / "backends").mkdir(parents=True)
    (pkg / "quantization").mkdir()
    for path in (pkg / "__init__.py", pkg / "backends" / "__init__.py", pkg / "quantization" / "__init__.py",
                 pkg / "quantization" / "saturation.py"):
        path.write_text("")
    (pkg / "backends" / "ort.py").write_text("def f():\n    from ..quantization.saturation import x\n")
    modules = architecture.load_modules(pkg)
    assert architecture.upward_edges(modules) == [("yoloparity.backends.ort", "yoloparity.quantization.saturation")]
    assert architecture.needless_function_imports(modules) == [("yoloparity.backends.ort", "yoloparity.quantization.saturation")]


@pytest.mark.unit
def test_no_backend_or_precision_name_is_compared_as_a_string_outside_the_registry():
    """Every backend/precision question is a registry field or method (was 35 string tests in 12 modules)."""
    assert architecture.capability_string_tests(MODULES, architecture.capability_names()) == []


@pytest.mark.unit
def test_the_checker_sees_a_precision_compared_as_a_string(tmp_path):
    pkg = tmp_path / "yoloparity"
    (pkg / "api").mkdir(parents=True)
    (pkg / "api" / "x.py").write_text("def f(p, b):\n    return p != 'fp16' or b in ('torch', 'x')\n")
    modules = architecture.load_modules(pkg)
    assert architecture.capability_string_tests(modules, architecture.capability_names()) == [
        ("yoloparity.api.x", 2, "b in ('torch', 'x')"), ("yoloparity.api.x", 2, "p != 'fp16'")]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.unit
@pytest.mark.parametrize("module", ["yoloparity", "yoloparity.cli", "yoloparity.backends.onnxruntime_backend",
                                    "yoloparity.backends.openvino_backend", "yoloparity.backends.litert_backend"])
def test_importing_does_not_import_torch(module):
    loaded = _modules_after(f"import {module}")
    assert "torch" not in loaded and "onnxruntime" not in loaded


def test_onnx_runtime_predicts_without_torch(yolov5n_onnx, assets):
    """Running an ONNX file end to end (load, predict, read the spec from its metadata) never loads torch."""
    loaded = _modules_after(
        "import yoloparity\n"
        f"m = yoloparity.load_model({yolov5n_onnx!r})\n"
        f"r = m.predict([{str(assets / 'images' / 'bus.jpg')!r}], imgsz=320)\n"
        "assert len(r[0].detections) > 0\n"
        "m.close()")
    assert "onnxruntime" in loaded and "torch" not in loaded


@pytest.mark.unit
def test_backend_capabilities_are_the_registry_entries():
    """Every check reads the registry: the CLI's choices, the loader, the audit's configurations and layer capture."""
    import argparse
    import importlib

    from yoloparity.auditing.spec import SpecError, parse_config
    from yoloparity.backends.base import BackendBase
    from yoloparity.backends.registry import BACKENDS, backend_info
    from yoloparity.cli.common import add_model_args
    from yoloparity.errors import BackendUnavailableError

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    choices = {a.dest: a.choices for a in parser._actions}
    assert choices["backend"] == list(BACKENDS) and set(choices["precision"]) == {"fp32", "fp16", "bf16", "fp64", "runtime"}
    for info in BACKENDS.values():  # layer capture is a method of the backends whose entry says they have it
        module, factory = info.factory.split(":")
        cls = next(v for v in vars(importlib.import_module(module)).values()
                   if isinstance(v, type) and issubclass(v, BackendBase) and v is not BackendBase and v.name == info.name)
        assert (cls.layer_outputs is not BackendBase.layer_outputs) == info.layer_capture, info.name
    backend_info("openvino").check_precision("bf16")  # OpenVINO's bf16 hint: refused by two lists before
    assert parse_config("backend=openvino,precision=bf16").precision == "bf16"
    with pytest.raises(BackendUnavailableError, match="fp16 on the torch backend runs on CUDA"):
        backend_info("torch").check_precision("fp16", "cpu")
    with pytest.raises(SpecError, match="precision=fp16 runs on backend=torch .*backend=onnxruntime"):
        parse_config("backend=onnxruntime,precision=fp16")
    with pytest.raises(SpecError, match="backend=openvino runs on device=cpu"):
        parse_config("backend=openvino,device=cuda:0")


@pytest.mark.unit
def test_a_new_head_format_is_one_module_and_one_registry_line(monkeypatch):
    """A format written here and registered (the one line in heads/__init__.py) runs through the loader's shape
    check, the export's axes, post-processing and the audit's comparison without another module knowing it."""
    import numpy as np

    from yoloparity import heads
    from yoloparity.auditing.capture import ImageStages
    from yoloparity.auditing.compare import compare_image
    from yoloparity.backends.metadata import check_head_output
    from yoloparity.heads.base import Candidates, HeadFormat
    from yoloparity.heads.nms import nms
    from yoloparity.pipeline.postprocess import postprocess_stages
    from yoloparity.types import Letterbox, ModelSpec, Thresholds

    class CornersHead(HeadFormat):  # the v8 layout with xyxy boxes, selected by NMS
        name = "corners"
        summary = "anchor-free, xyxy boxes"

        def select(self, raw_image, th, iou):
            rows = self.rows(raw_image)
            best = rows[:, 4:].argmax(axis=1)
            score = rows[np.arange(len(rows)), 4 + best]
            keep = score > th.conf
            cands = Candidates(np.ascontiguousarray(rows[keep, :4]), score[keep], best[keep].astype(np.int32))
            return cands, nms(cands, iou, max_det=th.max_det)

    monkeypatch.setitem(heads.HEAD_FORMATS, "corners", CornersHead())
    spec = ModelSpec(names=("a", "b"), head_format="corners", family="ultralytics")
    anchors = (64 // 8) ** 2 + (64 // 16) ** 2 + (64 // 32) ** 2
    raw = np.zeros((1, 6, anchors), np.float32)
    raw[0, :4, 0], raw[0, 4, 0] = (10, 10, 30, 30), 0.9
    raw[0, :4, 1], raw[0, 5, 1] = (11, 11, 31, 31), 0.8
    check_head_output("m.onnx", spec, raw, (1, 3, 64, 64))
    assert heads.head_format("corners").export_axes() == ({0: "batch", 2: "anchors"}, 1)
    lb = Letterbox((64, 64), (64, 64), 1.0, (0.0, 0.0), (0, 0, 0, 0))
    cands, kept, dets = postprocess_stages(raw[0], "corners", lb, Thresholds(conf=0.25))
    assert len(cands) == 2 and dets.boxes.tolist() == [[10, 10, 30, 30], [11, 11, 31, 31]]  # two classes: both kept
    stages = ImageStages("x.jpg", None, None, lb, raw[0], cands, kept, dets)
    assert compare_image(stages, stages, "corners", 0.25, 0.7).differences == []
