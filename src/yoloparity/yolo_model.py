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
from .heads import head_format
from .models.hub import cache_dir, resolve_model_path
from .pipeline.predictor import Predictor, StageTimes
from .settings import InferenceSettings, LoadOptions, as_size
from .types import ModelSpec, Result


def export_model(weights: str, out: str, imgsz: int | Sequence[int] | None = None, dynamic: bool = False, opset: int = 17,
                 batch: int = 1, head_branch: str | None = None) -> str:
    """Export a ``.pt`` checkpoint to ONNX (see :mod:`yoloparity.models.export`); ``imgsz`` None: the size the
    checkpoint was trained at (its spec's), which a dynamic export records as its default size too."""
    from .backends.torch_backend import load_built
    from .models.export import ExportOptions, export_onnx

    path = resolve_model_path(weights)
    if not path.endswith(".pt"):
        raise ModelFileError(path, "export reads .pt checkpoints")
    built = load_built(path, head_branch=head_branch)
    hw = as_size(imgsz) or built.spec.imgsz
    return export_onnx(built.net, built.spec, out, ExportOptions(imgsz=hw, batch=batch, dynamic=dynamic, opset=opset))


def cached_onnx_export(pt_path: str, head_branch: str | None = None) -> str:
    """A dynamic ONNX export of a checkpoint (of its ``head_branch``, for end-to-end checkpoints), made once and kept in
    the cache folder."""
    from .backends.torch_backend import file_sha256

    digest = file_sha256(pt_path)[:16]
    branch = f"-{head_branch}" if head_branch else ""
    # "-v2": the export records the checkpoint's training size as its default (files of the first layout said 640)
    out = os.path.join(cache_dir(), "onnx", f"{os.path.basename(pt_path)[:-3]}-{digest}{branch}-v2-dynamic.onnx")
    if not os.path.exists(out):
        with atomic_path(out, suffix=".onnx") as tmp:
            export_model(pt_path, tmp, dynamic=True, head_branch=head_branch)
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

    def resolve(self, settings: InferenceSettings) -> tuple[InferenceSettings, list[str]]:
        """The one place a run's settings meet this model file: ``imgsz`` None becomes the model's own size (the
        training size of a checkpoint, a static file's input; a validator's square of it), a file with a static
        input runs square at its size and one with a static batch at that batch, ``iou`` None becomes the family's
        reference IoU for the predictor or the validator; each change the user did not ask for comes with a note.
        ``imgsz`` is checked against the stride and ``classes`` against the names. Every path (CLI, API, val,
        audit, bench, both engines) runs what this returns."""
        notes: list[str] = []
        asked = settings.imgsz
        size = asked or ((self.spec.square_size,) * 2 if settings.validating else self.spec.imgsz)
        c = self.backend.constraints
        changes: dict = {}
        if c.height is not None and c.width is not None:
            if settings.validating and c.height != c.width:
                notes.append(f"static input {c.height}x{c.width} is not square; validation needs a square or dynamic model")
            mode, _, note = c.fit_square(settings.mode, asked)
            size = (c.height, c.width)
            if note:
                notes.append(note)
            changes["mode"] = mode
        if c.batch is not None and settings.batch != c.batch:
            changes["batch"] = c.batch
            notes.append(f"the model has a static batch of {c.batch}: --batch {c.batch} used instead of {settings.batch}")
        if size[0] % self.spec.stride or size[1] % self.spec.stride:
            raise ValueError(f"imgsz {size} must be a multiple of the model stride {self.spec.stride}")
        if settings.classes is not None:
            bad = [k for k in settings.classes if not 0 <= k < self.spec.nc]
            if bad:
                raise ValueError(f"class ids {bad} are outside 0..{self.spec.nc - 1}")
        if settings.iou is None:
            changes["iou"] = head_format(self.spec.head_format).reference_iou(settings.validating)
        return settings.replace(imgsz=size, **changes), notes

    def predictor(self, settings: InferenceSettings | None = None, *, keep_images: bool = False, keep_raw: int = 0,
                  **changes) -> Predictor:
        """A :class:`Predictor` for ``settings`` (default: the predictor's defaults) with ``changes`` (any
        :class:`~yoloparity.settings.InferenceSettings` field: ``imgsz``, ``batch``, ``conf`` …), resolved against
        this model (:meth:`resolve`); ``predictor.notes`` says what had to change, ``predictor.settings`` what runs."""
        settings = settings or InferenceSettings()
        if changes:
            settings = settings.replace(**changes)
        resolved, notes = self.resolve(settings)
        predictor = Predictor(self.backend, resolved, keep_images=keep_images, keep_raw=keep_raw)
        predictor.notes = notes
        return predictor

    def predict_iter(self, source, settings: InferenceSettings | None = None,
                     progress: Callable[[int], None] | None = None, **changes) -> Iterator[Result]:
        """Results of ``source`` one by one, in input order, for ``settings`` with ``changes`` (as :meth:`predictor`;
        the last predictor's stage times are kept)."""
        predictor = self.predictor(settings, **changes)
        self.last_predictor = predictor
        yield from predictor.run(resolve_source(source), progress=progress)

    def predict(self, source, settings: InferenceSettings | None = None, **changes) -> list[Result]:
        """Detections for every image of ``source``, in input order (bad images carry ``.error``), for ``settings``
        (default: the predictor's) with ``changes`` (``imgsz``, ``conf`` …)."""
        return list(self.predict_iter(source, settings, **changes))

    @property
    def last_times(self) -> StageTimes | None:
        """Stage times of the last predict call, or None before one."""
        predictor = getattr(self, "last_predictor", None)
        return predictor.times if predictor else None


def load_model(path: str, backend: str | None = None, device: str | None = None, *, options: LoadOptions | None = None,
               **kwargs) -> YoloModel:
    """Load ``path`` (a ``.pt`` checkpoint, an ``.onnx``/``.xml``/``.tflite`` file, or an official model name) on a
    backend; without one, the backend that reads the file's suffix (torch, onnxruntime, openvino, litert).

    What a backend accepts is its registry entry (:mod:`yoloparity.backends.registry`): ``precision`` ``"fp64"``
    (torch, CPU) runs the unfused network in float64, the exact function the checkpoint defines; ``"fp16"`` runs
    torch on CUDA or OpenVINO with its f16 hint, ``"bf16"`` OpenVINO with its bf16 hint. ONNX Runtime, OpenVINO and
    LiteRT run an fp16 or int8 file at the precision it was saved in. ``head_branch`` picks the branch of an end-to-end
    checkpoint. With a backend that reads ONNX, a ``.pt`` checkpoint is exported once (that head) to a dynamic ONNX
    file in the cache folder. A file the backend does not read is refused with the backend that does.

    ``options``: the :class:`~yoloparity.settings.LoadOptions` of a run; ``backend``, ``device`` and keywords naming
    its fields (``precision``, ``threads``, ``head_branch``, ``int8_input``, ``deterministic``) change it.
    """
    given = {k: v for k, v in (("backend", backend), ("device", device)) if v is not None}
    rest = dict(kwargs, **given)
    load = LoadOptions.take(rest, options)
    if rest:
        raise TypeError(f"load_model() got unknown options {sorted(rest)}; it takes {', '.join(LoadOptions.field_names())}")
    return _load(os.fspath(path), load)


def resolve_load(path: str, load: LoadOptions) -> tuple[str, LoadOptions]:
    """The one place load options meet a model file: the path resolved (a file, a model folder's one file, an
    official name), the backend decided (the reader of the file's suffix) and every option checked against that
    backend's registry entry (device, precision there, ``head_branch`` only where a branch can be picked, ``int8_input``
    only for int8-input files). Returns (path, options with the backend); nothing is loaded."""
    resolved = resolve_model_path(path)
    info = backend_info(load.backend or backend_for(resolved))
    info.check_device(load.device, resolved)
    info.check_precision(load.precision or DEFAULT_PRECISION, load.device, resolved)
    exports_pt = resolved.endswith(".pt") and info.exports_pt
    if load.head_branch is not None and not (info.picks_head and (exports_pt or info.runs_checkpoint)):
        raise ModelFileError(resolved, f"--head picks a branch of a .pt checkpoint; a {info.name} file computes the "
                                       "head it was exported with (yoloparity export --head ...)")
    if load.int8_input != "round" and not info.int8_input:
        raise ModelFileError(resolved, f"--int8-input applies to files with an int8 input, on "
                                       f"{' or '.join(backends_with(lambda b: b.int8_input))}")
    return resolved, load.replace(backend=info.name)


def _load(path: str, load: LoadOptions) -> YoloModel:
    """:func:`load_model` of one :class:`LoadOptions`: :func:`resolve_load`, the export of a ``.pt`` for a backend
    that reads ONNX, then the backend."""
    resolved, load = resolve_load(path, load)
    info = backend_info(load.backend)
    options = load.backend_kwargs()
    if not info.session_determinism:
        options.pop("deterministic", None)  # elsewhere (torch) determinism is process-wide: deterministic_settings()
    if is_default_precision(options.get("precision")):
        options.pop("precision", None)
    if os.path.isdir(resolved):
        raise InputNotFoundError(resolved, "is a folder, not a model file")
    if resolved.endswith(".pt") and info.exports_pt:  # the export is made of the branch asked for; it has no other
        resolved = cached_onnx_export(resolved, options.pop("head_branch", None))
    suffix = os.path.splitext(resolved)[1].lower()
    readers = readers_of(suffix)
    if suffix not in info.reads and readers:
        raise ModelFileError(resolved, f"the {info.name} backend does not read {suffix} files; use --backend {' or '.join(readers)}")
    return YoloModel(create_backend(info.name, resolved, device=load.device, **options), resolved)
