"""The structure DESIGN.md promises, measured from the source (scripts/architecture.py) and from a real import."""

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
def test_imports_inside_functions_only_for_heavy_or_optional_runtimes():
    """An import inside a function is there to keep a runtime (torch, onnxruntime, ray …) off the import path of
    commands that do not use it; any other belongs at the top of the module."""
    assert architecture.needless_function_imports(MODULES) == []


@pytest.mark.unit
def test_the_floor_table_names_every_package():
    units = {architecture.unit_of(name) for name in MODULES}
    for unit in units:
        architecture.floor_of(unit)  # raises for a package DESIGN.md's floors do not place


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
    assert choices["backend"] == list(BACKENDS) and set(choices["precision"]) == {"fp32", "fp16", "bf16", "fp64"}
    for info in BACKENDS.values():  # layer capture is a method of the backends whose entry says they have it
        module, factory = info.factory.split(":")
        cls = next(v for v in vars(importlib.import_module(module)).values()
                   if isinstance(v, type) and issubclass(v, BackendBase) and v is not BackendBase and v.name == info.name)
        assert (cls.layer_outputs is not BackendBase.layer_outputs) == info.layer_capture, info.name
    backend_info("openvino").check_precision("bf16")  # OpenVINO's bf16 hint: refused by two lists before
    assert parse_config("backend=openvino,precision=bf16").precision == "bf16"
    with pytest.raises(BackendUnavailableError, match="fp16 on the torch backend runs on cuda"):
        backend_info("torch").check_precision("fp16", "cpu")
    with pytest.raises(SpecError, match="precision=fp16 runs on backend=torch .*backend=onnxruntime"):
        parse_config("backend=onnxruntime,precision=fp16")
    with pytest.raises(SpecError, match="backend=openvino runs on device=cpu"):
        parse_config("backend=openvino,device=cuda:0")
