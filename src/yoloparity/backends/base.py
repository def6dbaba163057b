"""The backend protocol and its lazy registry.

A backend only turns an NCHW float32 batch into the raw head tensor (as a NumPy array); decoding
and NMS are shared (:mod:`yoloparity.pipeline`). Backends are found by name, and a backend's
runtime (torch, onnxruntime …) is imported only when that backend is created — never chosen by
sniffing file suffixes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import BackendUnavailableError, InputNotFoundError, ModelFileError
from ..types import ModelSpec


@dataclass(frozen=True)
class ShapeConstraints:
    """What input shapes a backend accepts: ``None`` means any."""

    batch: int | None = None
    height: int | None = None
    width: int | None = None

    def fit_square(self, mode: str, imgsz: int | None) -> tuple[str, int | None, str | None]:
        """(mode, size, note) a static-shape file can run: square at its own size, with a note when that differs
        from the request. A dynamic file runs as asked (note None)."""
        size = self.height or self.width
        if size is None:
            return mode, imgsz, None
        if mode == "square" and imgsz in (None, size):
            return mode, size, None
        return "square", size, (f"the model has a static {self.height}x{self.width} input: --square at {size} used "
                                f"instead of {mode} at {imgsz or 'its default size'}")

    def check(self, shape: tuple[int, ...], model_path: str) -> None:
        n, _, h, w = shape
        for name, want, got in (("batch", self.batch, n), ("height", self.height, h), ("width", self.width, w)):
            if want is not None and want != got:
                raise BackendUnavailableError(
                    model_path,
                    f"the model has a static input {name} of {want} but was given {got}"
                    + (" (export with --dynamic, or use --batch 1)" if name == "batch" else " (use --square, or export with --dynamic)"),
                )


class Backend(Protocol):
    name: str
    device: str
    precision: str
    spec: ModelSpec
    constraints: ShapeConstraints

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw head output for an (N, 3, H, W) float32 batch."""


class BackendBase:
    """What every backend shares: ``run`` checks the batch (4-D float32 NCHW, 3 channels) and the file's static
    shape before the runtime sees it, calls ``_run_impl`` and checks that a float32 array with one row per image
    came back; ``close()`` frees the runtime (sessions, compiled models, thread pools); usable as a context manager.
    A subclass sets ``name``, ``device``, ``precision``, ``spec``, ``constraints`` and ``path`` and implements
    ``_run_impl``."""

    name = "base"
    device = "cpu"
    precision = "fp32"
    path = ""
    spec: ModelSpec
    constraints = ShapeConstraints()
    notes: list[str] = []

    _closed = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._closed:
            raise BackendUnavailableError(self.path, f"this {self.name} model was closed")
        batch = check_batch(batch, self.path)
        self.constraints.check(batch.shape, self.path)
        out = self._run_impl(batch)
        if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64) or out.shape[0] != batch.shape[0]:
            raise ModelFileError(self.path, f"the {self.name} backend returned {getattr(out, 'dtype', type(out))} "
                                            f"{getattr(out, 'shape', '')} for a batch of {batch.shape[0]}")
        return out

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime; a closed backend refuses to run. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Free what the runtime holds (sessions, compiled models, thread pools)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# name -> "module:factory"; the module is imported on first use only
_REGISTRY: dict[str, str] = {
    "torch": "yoloparity.backends.torch_backend:create",
    "onnxruntime": "yoloparity.backends.onnxruntime_backend:create",
    "openvino": "yoloparity.backends.openvino_backend:create",
    "litert": "yoloparity.backends.litert_backend:create",
}

# what each backend reads; a .pt given to an ONNX-reading backend is exported once into the cache
BACKEND_SUFFIXES: dict[str, tuple[str, ...]] = {
    "torch": (".pt",),
    "onnxruntime": (".onnx",),
    "openvino": (".onnx", ".xml"),
    "litert": (".tflite",),
}


def available_backends() -> list[str]:
    """The backend names, in registry order (the one list every command and report takes them from)."""
    return list(_REGISTRY)


def backend_for(path: str) -> str:
    """The backend that reads ``path`` by default, from its suffix (the first reader in :data:`BACKEND_SUFFIXES`)."""
    import os

    suffix = os.path.splitext(path)[1].lower()
    for name, suffixes in BACKEND_SUFFIXES.items():
        if suffix in suffixes:
            return name
    known = sorted({s for suffixes in BACKEND_SUFFIXES.values() for s in suffixes})
    raise ModelFileError(path, f"no backend reads '{suffix or 'files without a suffix'}' files; model files are {', '.join(known)}")


def create_backend(name: str, model_path: str, device: str = "cpu", **options: Any) -> Backend:
    target = _REGISTRY.get(name)
    if target is None:
        raise BackendUnavailableError(None, f"unknown backend '{name}'; choose one of: {', '.join(available_backends())}")
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(model_path, f"backend '{name}' needs a package that is not installed ({exc.name})") from exc
    create: Callable[..., Backend] = getattr(module, factory)
    return create(model_path, device=device, **options)


def check_batch(batch: np.ndarray, model_path: str) -> np.ndarray:
    """The public entry check of every backend: a 4-D float32 NCHW batch with 3 channels."""
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = getattr(batch, "shape", None)
        raise ValueError(f"{model_path}: expected an (N, 3, H, W) array, got shape {shape}")
    if batch.dtype != np.float32:
        raise TypeError(f"{model_path}: expected a float32 batch, got {batch.dtype}")
    return np.ascontiguousarray(batch)


def check_cpu_model_file(path: str, device: str, backend: str) -> None:
    """The entry checks of the CPU-only file backends (openvino, litert): the file exists, the device is the CPU."""
    import os

    if not os.path.exists(path):
        raise InputNotFoundError(path, "no such file")
    if device.split(":")[0] != "cpu":
        raise BackendUnavailableError(path, f"device '{device}' is not supported by the {backend} backend here (cpu only)")
