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
from .compute_precision import ComputePrecision
from .registry import backend_info


@dataclass(frozen=True)
class ShapeConstraints:
    """What input shapes a backend accepts: ``None`` means any."""

    batch: int | None = None
    height: int | None = None
    width: int | None = None

    def fit_square(self, mode: str, imgsz: int | tuple[int, int] | None) -> tuple[str, int | None, str | None]:
        """(mode, size, note) a static-shape file can run: square at its own size, with a note when that differs
        from the request (``imgsz`` one number or (H, W); None: the default). A dynamic file runs as asked (note
        None)."""
        size = self.height or self.width
        if size is None:
            return mode, imgsz, None
        if isinstance(imgsz, (tuple, list)):
            imgsz = imgsz[0] if imgsz[0] == imgsz[-1] else "x".join(str(v) for v in imgsz)
        if mode == "square" and imgsz in (None, size):
            return mode, size, None
        return "square", size, (f"the model has a static {self.height}x{self.width} input: --square at {size} used "
                                f"instead of {mode} at {imgsz or 'its default size'}")

    def check(self, shape: tuple[int, ...], model_path: str) -> None:
        """Refuse a batch whose shape a static-shape file cannot take, saying how to get one that can."""
        n, _, h, w = shape
        for name, want, got in (("batch", self.batch, n), ("height", self.height, h), ("width", self.width, w)):
            if want is not None and want != got:
                raise BackendUnavailableError(
                    model_path,
                    f"the model has a static input {name} of {want} but was given {got}"
                    + (" (export with --dynamic, or use --batch 1)" if name == "batch" else " (use --square, or export with --dynamic)"),
                )


class LayersUnavailable(Exception):
    """This backend cannot expose its intermediate layers (the reason is the message)."""


class Backend(Protocol):
    """What the pipeline needs of a backend: the raw head output of a batch, and what it is (spec, precision)."""
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
        """The raw head output of an (N, 3, H, W) float32 batch, its shape checked against the head format."""
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

    def compute_precision(self) -> ComputePrecision:
        """What this backend's runs compute in, read from the runtime where it tells (:mod:`.compute_precision`);
        here, for runtimes that compute as the file was saved: the file's precision."""
        return ComputePrecision(self.precision, "the file's saved precision")

    def layer_outputs(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every top-level layer's output (``model.N``, float64) for one (1, 3, H, W) float32 input, computed the
        way this backend runs (its device, precision, fusions) — what ``audit --layers`` compares. Backends whose
        registry entry has ``layer_capture`` implement it; the others raise :class:`LayersUnavailable`."""
        raise LayersUnavailable(f"the {self.name} backend cannot expose intermediate layers")

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


def create_backend(name: str, model_path: str, device: str = "cpu", **options: Any) -> Backend:
    """Create backend ``name`` (its :class:`~.registry.BackendInfo`) on ``model_path``: the device is checked
    against the entry, then the runtime's module is imported (only now) and its ``create`` called with
    ``options`` (``threads``, ``precision``, ``deterministic`` … as the entry allows)."""
    info = backend_info(name)
    info.check_device(device, model_path)
    module_name, factory = info.factory.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(model_path, f"backend '{name}' needs a package that is not installed ({exc.name})") from exc
    create: Callable[..., Backend] = getattr(module, factory)
    return create(model_path, device=device, **options)


def run_image_by_image(run_one: Callable[[Any], np.ndarray], batch, pool=None) -> np.ndarray:
    """Each image of ``batch`` (an array or tensor, N first) as its own one-image run of ``run_one``, over ``pool``
    (an executor) when given — the runtimes release the GIL — the outputs concatenated in input order. What keeps a
    CPU backend's output independent of the batch it was handed (the torch and ONNX Runtime backends)."""
    images = (batch[i:i + 1] for i in range(batch.shape[0]))
    return np.concatenate(list(pool.map(run_one, images) if pool is not None else map(run_one, images)), axis=0)


def check_batch(batch: np.ndarray, model_path: str) -> np.ndarray:
    """The public entry check of every backend: a 4-D float32 NCHW batch with 3 channels."""
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = getattr(batch, "shape", None)
        raise ValueError(f"{model_path}: expected an (N, 3, H, W) array, got shape {shape}")
    if batch.dtype != np.float32:
        raise TypeError(f"{model_path}: expected a float32 batch, got {batch.dtype}")
    return np.ascontiguousarray(batch)


def check_model_file(path: str, device: str, backend: str) -> None:
    """The entry checks of the file backends created directly: the file exists, the device is one the backend's
    registry entry runs on."""
    import os

    if not os.path.exists(path):
        raise InputNotFoundError(path, "no such file")
    backend_info(backend).check_device(device, path)
