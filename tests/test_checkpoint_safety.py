"""The checkpoint reader never runs pickled code: malicious checkpoints are refused, nothing executes."""

from __future__ import annotations

import io
import pickle
import zipfile

import pytest
import torch

from yoloparity.errors import CheckpointError, UnsafeCheckpointError
from yoloparity.models.checkpoint import read_checkpoint


def _torch_zip(path, payload: bytes) -> str:
    """A file laid out like torch.save's zip archive, holding ``payload`` as its pickle."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return str(path)


class _Call:
    """Pickles as a call of ``func(*args)`` on load."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _marker_payload(func, marker) -> bytes:
    return pickle.dumps({"model": _Call(func, f"touch {marker}"), "epoch": -1}, protocol=2)


@pytest.mark.unit
@pytest.mark.parametrize("func_name", ["os.system", "posix.system", "subprocess.call"])
def test_pickle_that_runs_a_shell_command_is_refused(tmp_path, func_name):
    import importlib

    module, name = func_name.rsplit(".", 1)
    func = getattr(importlib.import_module(module), name)
    marker = tmp_path / "pwned"
    ckpt = _torch_zip(tmp_path / "evil.pt", _marker_payload(func, marker))
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(ckpt)
    assert "evil.pt" in str(err.value) and "not a model class" in str(err.value)
    assert not marker.exists()


@pytest.mark.unit
def test_pickle_that_calls_builtins_eval_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Call(eval, f"open({str(marker)!r}, 'w')")}, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match=r"(__builtin__|builtins)\.eval"):
        read_checkpoint(_torch_zip(tmp_path / "evil.pt", payload))
    assert not marker.exists()


@pytest.mark.unit
def test_evil_global_hidden_inside_a_model_attribute_is_refused(tmp_path):
    """A real checkpoint layout (model class stubs) with a poisoned attribute deep inside."""
    marker = tmp_path / "pwned"
    import os

    class Model:  # pickled by reference as __main__-like test class; becomes a stub
        pass

    Model.__module__ = "models.yolo"
    Model.__qualname__ = "Model"
    model = Model.__new__(Model)
    model.__dict__.update({"yaml": {"nc": 1}, "payload": _Call(os.system, f"touch {marker}")})
    import sys
    import types

    package, fake = types.ModuleType("models"), types.ModuleType("models.yolo")
    package.yolo, fake.Model = fake, Model
    sys.modules.update({"models": package, "models.yolo": fake})
    try:
        payload = pickle.dumps({"model": model}, protocol=2)
    finally:
        del sys.modules["models"], sys.modules["models.yolo"]
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_checkpoint(_torch_zip(tmp_path / "evil.pt", payload))
    assert not marker.exists()


def test_real_checkpoint_reads_as_inert_stubs(yolov5n_pt):
    ckpt = read_checkpoint(yolov5n_pt)
    assert ckpt.family == "yolov5"
    assert type(ckpt.model).__module__ == "yoloparity.stub"
    assert ckpt.model.yaml["nc"] == 80


@pytest.mark.unit
def test_state_dict_file_is_not_a_yolo_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a YOLO checkpoint"):
        read_checkpoint(path)


def test_truncated_checkpoint_is_reported(tmp_path, yolov5n_pt):
    data = open(yolov5n_pt, "rb").read()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        read_checkpoint(path)


@pytest.mark.unit
def test_legacy_non_zip_pickle_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    path.write_bytes(pickle.dumps({"model": None}, protocol=2))
    with pytest.raises(CheckpointError, match="legacy"):
        read_checkpoint(path)


def test_unsupported_module_is_named(tmp_path, yolov5n_pt):
    """A checkpoint whose yaml uses a block we do not build is refused with the block's name."""
    from yoloparity.errors import UnsupportedModuleError
    from yoloparity.models.build import build_model

    ckpt = read_checkpoint(yolov5n_pt)
    ckpt.model.yaml = {**ckpt.model.yaml, "backbone": [[-1, 1, "Focus", [64, 3]]] + ckpt.model.yaml["backbone"][1:]}
    with pytest.raises(UnsupportedModuleError, match="Focus"):
        build_model(ckpt)


@pytest.mark.unit
def test_tensor_view_outside_its_storage_is_refused(tmp_path):
    """A crafted tensor whose size reaches past its storage must not read foreign memory."""

    class Storage:
        pass

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, Storage) else None

    import torch._utils

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"model": _Call(torch._utils._rebuild_tensor_v2, Storage(), 0, (100000,), (1,), False, None)})
    path = tmp_path / "oob.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", b"\0" * 16)
    with pytest.raises(CheckpointError, match="oob.pt"):
        read_checkpoint(path)
