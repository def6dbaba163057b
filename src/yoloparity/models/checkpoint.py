"""Read YOLOv5 / Ultralytics ``.pt`` checkpoints without running any of their code.

A ``.pt`` file is a zip holding a pickle of the whole model object. Unpickling it normally
imports ``models.yolo`` or ``ultralytics`` and lets the pickle call any importable function
(``os.system`` included). Here the unpickler resolves no global by import:

* tensors are rebuilt by our own functions from the raw storage bytes in the zip;
* the values ``torch.load(weights_only=True)`` accepts are made for real — torch's allowlist is the
  floor of what is benign: ``torch.Size``, dtypes, devices, ``OrderedDict``/``Counter``, set,
  frozenset, slice, complex, bytearray — plus what real training checkpoints hold beside the model:
  numpy scalars and arrays through numpy's own reconstructors (``best_fitness`` is a numpy float)
  and pathlib paths (as pure paths: nothing touches the file system);
* classes of the model packages (``models.*``, ``ultralytics.*``, ``torch.nn.modules.*`` …)
  become inert :class:`Stub` objects that only record the state pickle hands them;
* any other global (``os.system``, ``builtins.eval``, ``subprocess.*`` …) stops the load with
  :class:`UnsafeCheckpointError` naming it, before anything is called.

Ultralytics' trainer saves the EMA model after validating it, so a trained checkpoint's ``Detect``
keeps the last input shape as a ``torch.Size``; checkpoints users train hold one.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pathlib
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it (bytes written as latin-1 text), and nothing else."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 makes bytes)")
    return codecs.encode(text, "latin1")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstructor, for plain ``ndarray`` only (a subclass could run its own code)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy array of subclass {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_scalar(dtype: np.dtype, data: Any = None) -> Any:
    """numpy's scalar reconstructor: a numpy scalar from its dtype and raw bytes (``best_fitness``)."""
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"numpy scalar of {dtype!r}, not a numpy dtype")
    if dtype.hasobject:  # an object scalar is the object itself, already unpickled by this unpickler
        return data
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _safe_globals() -> dict[tuple[str, str], Any]:
    """Every global the unpickler makes for real, by (module, name)."""
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "Counter"): collections.Counter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("_codecs", "encode"): _latin1_encode,
        ("pathlib", "PosixPath"): pathlib.PurePosixPath,
        ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
        ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,
        ("pathlib", "PureWindowsPath"): pathlib.PureWindowsPath,
        ("pathlib", "Path"): pathlib.PurePath,
    }
    for builtin in (set, frozenset, dict, list, tuple, slice, complex, bytearray):
        table[("builtins", builtin.__name__)] = table[("__builtin__", builtin.__name__)] = builtin
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype)
    for name, dtype in _DTYPE_NAMES.items():
        table[("torch", name)] = dtype
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x spell the module so
        table[(core, "_reconstruct")] = _numpy_reconstruct
        table[(core, "scalar")] = _numpy_scalar
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    return table


_SAFE_GLOBALS = _safe_globals()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
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
        """``'yolov5'`` or ``'ultralytics'``, recognised by structure, never by the class name: YOLOv5 7.x pickles its
        model as ``DetectionModel`` too (``models.yolo`` from the repo, ``yolov5.models.yolo`` from pip), as
        Ultralytics does. A YOLOv5 head is anchor-based: its ``Detect`` holds an ``anchors`` buffer (levels x
        anchors x 2) and the yaml lists the anchors; Ultralytics' anchor-free heads (YOLOv5u included) have
        neither. A pickle from the ``ultralytics`` package is Ultralytics whatever it holds."""
        if stub_type(self.model).startswith("ultralytics."):
            return "ultralytics"
        return "yolov5" if _anchor_based(self.model) else "ultralytics"


def _anchor_based(model: Stub) -> bool:
    """Whether the model's last layer is an anchor-based head (YOLOv5's ``Detect``)."""
    layers = getattr(getattr(model, "_modules", None) and model._modules.get("model"), "_modules", None) or {}
    head = layers[max(layers, key=int)] if layers else None
    anchors = (getattr(head, "_buffers", None) or {}).get("anchors")
    if isinstance(anchors, torch.Tensor):
        return anchors.ndim == 3 and anchors.shape[-1] == 2 and anchors.numel() > 0
    return isinstance(model.yaml.get("anchors"), (list, int)) and bool(model.yaml.get("anchors"))


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
