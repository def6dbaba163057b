"""``load_model``: one object for any model file and backend, with the shared pipeline behind it."""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

import numpy as np

from .backends.base import Backend, create_backend
from .backends.registry import (
    DEFAULT_PRECISION,
    backend_for,
    backend_info,
    backends_with,
    is_default_precision,
    readers_of,
)
from .data.sources import resolve_source
from .errors import InputNotFoundError, ModelFileError
from .io.atomic import atomic_path
from .models.hub import cache_dir, resolve_model_path
from .pipeline.predictor import PredictOptions, Predictor, StageTimes
from .types import DEFAULT_CONF, DEFAULT_MAX_DET, ModelSpec, Result, Thresholds


def _as_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    values = tuple(int(v) for v in imgsz)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def export_model(weights: str, out: str, imgsz: int | Sequence[int] | None = None, dynamic: bool = False, opset: int = 17,
                 batch: int = 1, head: str | None = None) -> str:
    """Export a ``.pt`` checkpoint to ONNX (see :mod:`yoloparity.models.export`); ``imgsz`` None: the size the
    checkpoint was trained at (its spec's), which a dynamic export records as its default size too."""
    from .backends.torch_backend import load_built
    from .models.export import ExportOptions, export_onnx

    path = resolve_model_path(weights)
    if not path.endswith(".pt"):
        raise ModelFileError(path, "export reads .pt checkpoints")
    built = load_built(path, head=head)
    hw = _as_hw(imgsz) if imgsz is not None else built.spec.imgsz
    return export_onnx(built.net, built.spec, out, ExportOptions(imgsz=hw, batch=batch, dynamic=dynamic, opset=opset))


def cached_onnx_export(pt_path: str, head: str | None = None) -> str:
    """A dynamic ONNX export of a checkpoint (of its ``head``, for end-to-end checkpoints), made once and kept in
    the cache folder."""
    from .backends.torch_backend import file_sha256

    digest = file_sha256(pt_path)[:16]
    branch = f"-{head}" if head else ""
    # "-v2": the export records the checkpoint's training size as its default (files of the first layout said 640)
    out = os.path.join(cache_dir(), "onnx", f"{os.path.basename(pt_path)[:-3]}-{digest}{branch}-v2-dynamic.onnx")
    if not os.path.exists(out):
        with atomic_path(out, suffix=".onnx") as tmp:
            export_model(pt_path, tmp, dynamic=True, head=head)
    return out


class YoloModel:
    """A model on a backend. ``raw`` gives the head tensor; ``predict`` gives detections."""

    def __init__(self, backend: Backend, path: str):
        self.backend = backend
        self.path = path

    @property
    def spec(self) -> ModelSpec:
        """The model's spec (names, head format, strides, provenance)."""
        return self.backend.spec

    @property
    def notes(self) -> list[str]:
        """What the user should know about running this model here (e.g. int8 saturation on a CPU without VNNI)."""
        return list(getattr(self.backend, "notes", []))

    def close(self) -> None:
        """Free the backend's runtime (session, compiled model, thread pool)."""
        close = getattr(self.backend, "close", None)
        if close:
            close()

    def __enter__(self) -> "YoloModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """The backend's raw head output for an (N, 3, H, W) float32 batch."""
        return self.backend.run(batch)

    def predictor(
        self,
        batch: int = 16,
        imgsz: int | Sequence[int] | None = None,
        mode: str = "rect",
        conf: float = DEFAULT_CONF,
        iou: float | None = None,
        max_det: int = DEFAULT_MAX_DET,
        classes: Sequence[int] | None = None,
        agnostic: bool = False,
        multi_label: bool = False,
        decode_threads: int = 2,
        strict: bool = False,
        keep_images: bool = False,
        preprocess: str = "predict",
        keep_raw: int = 0,
    ) -> Predictor:
        """A :class:`Predictor` for these settings (``imgsz`` checked against the stride, ``classes`` against the
        names; ``imgsz`` None: the model's own). A file with a static input runs square at its size, whatever was
        asked, and ``predictor.notes`` says so: every path (CLI, API, val, audit, bench) crosses here.
        ``decode_threads``: images decoded ahead of inference in this process."""
        hw = _as_hw(imgsz) if imgsz is not None else self.spec.imgsz
        mode, hw, fit_note = self._fit_static_input(mode, hw, asked=imgsz)
        if hw[0] % self.spec.stride or hw[1] % self.spec.stride:
            raise ValueError(f"imgsz {hw} must be a multiple of the model stride {self.spec.stride}")
        if classes is not None:
            bad = [c for c in classes if not 0 <= int(c) < self.spec.nc]
            if bad:
                raise ValueError(f"class ids {bad} are outside 0..{self.spec.nc - 1}")
        options = PredictOptions(imgsz=hw, mode=mode, batch=batch, decode_threads=decode_threads, strict=strict, keep_images=keep_images,
                                 preprocess=preprocess, keep_raw=keep_raw)
        th = Thresholds(conf=conf, iou=iou, max_det=max_det, multi_label=multi_label, agnostic=agnostic,
                        classes=tuple(int(c) for c in classes) if classes is not None else None)
        predictor = Predictor(self.backend, options, th)
        predictor.notes = [fit_note] if fit_note else []
        return predictor

    def _fit_static_input(self, mode: str, hw: tuple[int, int], asked) -> tuple[str, tuple[int, int], str | None]:
        """(mode, size, note): a file with a static input runs square at its own size, by the backend's one rule
        (:meth:`~yoloparity.backends.base.ShapeConstraints.fit_square`); the note says what changed."""
        c = self.backend.constraints
        if c.height is None or c.width is None:
            return mode, hw, None
        fit_mode, _, note = c.fit_square(mode, hw if asked is not None else None)
        return fit_mode, (c.height, c.width), note

    def predict_iter(self, source, progress: Callable[[int], None] | None = None, **kwargs) -> Iterator[Result]:
        """Results of ``source`` one by one, in input order (the last predictor's stage times are kept)."""
        predictor = self.predictor(**kwargs)
        self.last_predictor = predictor
        yield from predictor.run(resolve_source(source), progress=progress)

    def predict(self, source, **kwargs) -> list[Result]:
        """Detections for every image of ``source``, in input order (bad images carry ``.error``)."""
        return list(self.predict_iter(source, **kwargs))

    @property
    def last_times(self) -> StageTimes | None:
        """Stage times of the last predict call, or None before one."""
        predictor = getattr(self, "last_predictor", None)
        return predictor.times if predictor else None


def load_model(path: str, backend: str | None = None, device: str = "cpu", **options) -> YoloModel:
    """Load ``path`` (a ``.pt`` checkpoint, an ``.onnx``/``.xml``/``.tflite`` file, or an official model name) on a
    backend; without one, the backend that reads the file's suffix (torch, onnxruntime, openvino, litert).

    What a backend accepts is its registry entry (:mod:`yoloparity.backends.registry`): ``precision`` ``"fp64"``
    (torch, CPU) runs the unfused network in float64, the exact function the checkpoint defines; ``"fp16"`` runs
    torch on CUDA or OpenVINO with its f16 hint, ``"bf16"`` OpenVINO with its bf16 hint. ONNX Runtime, OpenVINO and
    LiteRT run an fp16 or int8 file at the precision it was saved in. ``head`` picks the branch of an end-to-end
    checkpoint. With a backend that reads ONNX, a ``.pt`` checkpoint is exported once (that head) to a dynamic ONNX
    file in the cache folder. A file the backend does not read is refused with the backend that does.
    """
    resolved = resolve_model_path(os.fspath(path))
    info = backend_info(backend or backend_for(resolved))
    info.check_device(device, resolved)
    precision = options.pop("precision", None) or DEFAULT_PRECISION
    info.check_precision(precision, device, resolved)
    if not is_default_precision(precision):
        options["precision"] = precision
    exports_pt = resolved.endswith(".pt") and info.exports_pt
    head = options.pop("head", None)
    if head is not None and not (info.picks_head and (exports_pt or info.runs_checkpoint)):
        raise ModelFileError(resolved, f"--head picks a branch of a .pt checkpoint; a {info.name} file computes the "
                                       "head it was exported with (yoloparity export --head ...)")
    if head is not None and not exports_pt:
        options["head"] = head
    if options.get("int8_input", "round") != "round" and not info.int8_input:
        raise ModelFileError(resolved, f"int8_input applies to files with an int8 input, on "
                                       f"{' or '.join(backends_with(lambda b: b.int8_input))}")
    if os.path.isdir(resolved):
        raise InputNotFoundError(resolved, "is a folder, not a model file")
    if exports_pt:
        resolved = cached_onnx_export(resolved, head)
    suffix = os.path.splitext(resolved)[1].lower()
    readers = readers_of(suffix)
    if suffix not in info.reads and readers:
        raise ModelFileError(resolved, f"the {info.name} backend does not read {suffix} files; use --backend {' or '.join(readers)}")
    return YoloModel(create_backend(info.name, resolved, device=device, **options), resolved)
