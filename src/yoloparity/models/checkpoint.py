"""Read YOLOv5 / Ultralytics ``.pt`` checkpoints without running any of their code.

A ``.pt`` file is a zip holding a pickle of the whole model object. Unpickling it normally
imports ``models.yolo`` or ``ultralytics`` and lets the pickle call any importable function
(``os.system`` included). Here the unpickler resolves no global by import:

* tensors are rebuilt by our own functions from the raw storage bytes in the zip;
* ``collections.OrderedDict`` and a few builtin containers are the only real classes made;
* classes of the model packages (``models.*``, ``ultralytics.*``, ``torch.nn.modules.*`` …)
  become inert :class:`Stub` objects that only record the state pickle hands them;
* any other global (``os.system``, ``builtins.eval``, ``subprocess.*`` …) stops the load with
  :class:`UnsafeCheckpointError` naming it, before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CheckpointError, InputNotFoundError, UnsafeCheckpointError

# Module prefixes whose classes may appear in a model pickle; they are never imported, only stubbed.
_STUB_PREFIXES = (
    "models.",
    "utils.",
    "ultralytics.",
    "yolov5.",
    "torch.nn.modules.",
    "torch.nn.parameter",
    "__main__",
    "pathlib",
    "argparse",
    "types",
    "numpy",
)

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_DTYPE_NAMES = {str(d).split(".")[-1]: d for d in _STORAGE_DTYPES.values()}


class Stub:
    """An inert stand-in for a class of the pickled model: it records state and runs nothing."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<stub {self._qualname}>"


_stub_classes: dict[str, type] = {}


def _stub_class(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    cls = _stub_classes.get(qualname)
    if cls is None:
        cls = type(name, (Stub,), {"_qualname": qualname, "__module__": "yoloparity.stub"})
        _stub_classes[qualname] = cls
    return cls


def stub_type(obj: Any) -> str:
    """The qualified class name the checkpoint gave an object (``'models.common.C3'``)."""
    return obj._qualname if isinstance(obj, Stub) else type(obj).__qualname__


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    if not size:
        return storage[offset].clone()
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "dict", "list", "tuple", "slice"):
            return {"set": set, "frozenset": frozenset, "dict": dict, "list": list, "tuple": tuple, "slice": slice}[name]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
        if any(module == p.rstrip(".") or module.startswith(p) for p in _STUB_PREFIXES):
            return _stub_class(module, name)
        raise UnsafeCheckpointError(
            self._path, f"refused: the pickle refers to '{module}.{name}', which is not a model class (it could run code on load)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(self._path, f"unexpected persistent id {pid!r} in the pickle")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self._storages:
            dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError as exc:
                raise CheckpointError(self._path, f"tensor storage data/{key} is missing from the archive") from exc
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise CheckpointError(self._path, f"tensor storage data/{key} is corrupt ({exc})") from exc
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) < numel * itemsize:
                raise CheckpointError(self._path, f"tensor storage data/{key} is truncated ({len(raw)} of {numel * itemsize} bytes)")
            self._storages[key] = torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        return self._storages[key]


@dataclass
class Checkpoint:
    """What a checkpoint holds, read without executing it."""

    path: str
    model: Stub
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """``'yolov5'`` for ``models.yolo.Model`` pickles, ``'ultralytics'`` for ``DetectionModel``."""
        qual = stub_type(self.model)
        return "ultralytics" if qual.startswith("ultralytics.") or "DetectionModel" in qual else "yolov5"


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a YOLO ``.pt`` checkpoint safely; raise a :class:`CheckpointError` naming the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputNotFoundError(path, "no such file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise CheckpointError(path, "legacy (pre-zip) torch serialization is not supported; re-save it with torch >= 1.6")
        raise CheckpointError(path, "not a PyTorch checkpoint (not a zip archive; truncated or another kind of file?)")
    try:
        archive = zipfile.ZipFile(path)
        pkl_names = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pkl_names:
            raise CheckpointError(path, "zip archive without data.pkl: not a PyTorch checkpoint")
        pkl_name = min(pkl_names, key=len)
        prefix = pkl_name[: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() not in (b"little", b""):
            raise CheckpointError(path, "big-endian checkpoints are not supported")
        obj = _SafeUnpickler(archive.read(pkl_name), archive, prefix, path).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError) as exc:  # RuntimeError: torch refusing a tensor view outside its storage
        raise CheckpointError(path, f"corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"not a YOLO checkpoint: the pickle holds a {type(obj).__name__}, not a dict with a 'model'")
    model = obj.get("ema") if obj.get("model") is None else obj.get("model")
    if not isinstance(model, Stub) or not isinstance(getattr(model, "yaml", None), dict):
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(path, f"not a YOLO checkpoint: no pickled model with a 'yaml' architecture (keys: {keys})")
    meta = {k: v for k, v in obj.items() if k not in ("model", "ema", "optimizer")}
    return Checkpoint(path=path, model=model, meta=meta)


def named_tensors(module: Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a stubbed module tree, by dotted name (like ``state_dict``)."""
    out: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (getattr(module, kind, None) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
    for name, child in (getattr(module, "_modules", None) or {}).items():
        if child is not None:
            out.update(named_tensors(child, f"{prefix}{name}."))
    return out


def named_modules(module: Stub, prefix: str = "") -> dict[str, Stub]:
    """Every stubbed submodule by dotted name, the root as ``''``."""
    out = {prefix.rstrip("."): module}
    for name, child in (getattr(module, "_modules", None) or {}).items():
        if child is not None:
            out.update(named_modules(child, f"{prefix}{name}."))
    return out
