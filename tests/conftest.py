"""Shared fixtures: the real assets (``YOLOPARITY_ASSETS``, default ``../shared/assets``), models, exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("YOLOPARITY_ASSETS", ROOT.parent / "shared" / "assets")).resolve()
os.environ["YOLOPARITY_ASSETS"] = str(ASSETS)


HAVE_ASSETS = (ASSETS / "models" / "yolov5n.pt").exists()


def pytest_collection_modifyitems(config, items):
    """Without ../shared/assets only the ``unit`` tests can run; the others are skipped, saying where assets go."""
    if HAVE_ASSETS:
        return
    skip = pytest.mark.skip(reason=f"test assets not found at {ASSETS}: set YOLOPARITY_ASSETS or put ../shared beside "
                                   "the checkout (pytest -m unit runs the tests that need none)")
    for item in items:
        if "unit" not in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


def subset_dataset(assets: Path, root: Path, n: int) -> str:
    """The first ``n`` coco-val-mini images and their labels as a data.yaml of their own (ground truth from the
    labels, no COCO json): small datasets for the tests of mechanics rather than of mAP."""
    import shutil

    src = assets / "coco-val-mini"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p in sorted((src / "images").glob("*.jpg"))[:n]:
        shutil.copy(p, root / "images" / p.name)
        shutil.copy(src / "labels" / p.name.replace(".jpg", ".txt"), root / "labels")
    (root / "data.yaml").write_text((src / "data.yaml").read_text())
    return str(root / "data.yaml")


def require_tflite_converter() -> None:
    """Skip the calling test where the TFLite converter environment is missing (probed when the test runs, not at
    collection: it starts a Python)."""
    from yoloparity.quantization.tflite_export import ConverterUnavailableError, converter_python

    try:
        converter_python()
    except ConverterUnavailableError:
        pytest.skip("no TFLite converter environment (bash scripts/setup_tflite.sh)")


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` s pass (an AssertionError naming
    ``what``): for the tests that act on a run in another process at a given point, e.g. kill a rank mid-shard."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def coco_images(assets) -> list[str]:
    folder = assets / "coco-val-mini" / "images"
    return sorted(str(p) for p in folder.glob("*.jpg"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep exports made by tests (the onnxruntime-from-.pt cache) out of the user's cache."""
    os.environ["YOLOPARITY_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def yolov5n_pt(assets) -> str:
    return str(assets / "models" / "yolov5n.pt")


@pytest.fixture(scope="session")
def yolov5n_onnx(yolov5n_pt, tmp_path_factory) -> str:
    import yoloparity

    out = tmp_path_factory.mktemp("onnx") / "yolov5n-dynamic.onnx"
    return yoloparity.export(yolov5n_pt, str(out), dynamic=True)


def pytest_terminal_summary(terminalreporter):
    """Name the CPU the numbers were checked on: tolerances here are derived from it, and int8 depends on VNNI."""
    from yoloparity.environment import cpu_summary

    terminalreporter.write_line(f"ran on: {cpu_summary()}")
