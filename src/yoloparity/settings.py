"""A run's settings, in one home: how the model is loaded (:class:`LoadOptions`) and how images are run through it
(:class:`InferenceSettings`).

Both are frozen and checked when made, so a settings object that exists is valid from the CLI or the API down to
every worker, Ray actor and backend, which take it unchanged. What a setting becomes on a given model file (the
model's own image size, the square input of a static file, its static batch, the family's IoU) is decided once, by
:meth:`yoloparity.yolo_model.YoloModel.resolve`, with a note for every change; nothing below re-derives a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from .types import DEFAULT_CONF, DEFAULT_MAX_DET, HEAD_BRANCHES, Thresholds, check_counts

MODES = ("rect", "square")  # rect: each image padded to a stride multiple; square: every image at imgsz x imgsz
PREPROCESS = ("predict", "val")  # the letterbox of the references' predictors, or of their validators
INT8_INPUT = ("round", "truncate")


def check_mode(mode: str) -> str:
    """The one check of a letterbox mode, for every option class and parser that takes one."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def as_size(imgsz: int | Sequence[int] | None) -> tuple[int, int] | None:
    """An image size in its one form, (height, width): from one number (square), [N], [H, W] or None (the model's
    own, decided on the model)."""
    if imgsz is None:
        return None
    values = (imgsz,) if hasattr(imgsz, "__index__") else tuple(imgsz)  # an int, numpy's too
    if not 1 <= len(values) <= 2:
        raise ValueError(f"imgsz takes N or (H, W), got {imgsz!r}")
    check_counts(imgsz=min(int(v) for v in values))
    return (int(values[0]), int(values[-1]))


class _Settings:
    """What both settings objects do alike: copy with changes (checked again), name their fields, and take the
    keywords naming one out of a keyword dict."""

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the fields (to split a keyword dict into settings and the rest)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def take(cls, kwargs: dict[str, Any], base=None):
        """Settings from the keywords of ``kwargs`` that name a field (removed from it), over ``base`` (default: this
        class's defaults): how the keyword API builds the one settings object."""
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in cls.field_names()}
        base = base if base is not None else cls()
        return base.replace(**given) if given else base


@dataclass(frozen=True)
class InferenceSettings(_Settings):
    """How images become detections: input size and shape, batch, selection thresholds, decode threads, strictness,
    and which reference's preprocessing (``"predict"``: the predictors' letterbox and IoU; ``"val"``: the
    validators' letterbox, multi-label selection and IoU). ``imgsz``/``iou`` None: the model's own, decided by
    :meth:`~yoloparity.yolo_model.YoloModel.resolve`."""

    imgsz: tuple[int, int] | None = None
    mode: str = "rect"
    batch: int = 16
    conf: float = DEFAULT_CONF
    iou: float | None = None
    max_det: int = DEFAULT_MAX_DET
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    multi_label: bool = False
    decode_threads: int = 2  # images decoded and letterboxed ahead of inference, in this process
    strict: bool = False  # stop at the first bad image instead of skipping it
    preprocess: str = "predict"

    def __post_init__(self) -> None:
        """One form however the values were given (an int, a list, numpy ints) and what cannot run refused, naming it."""
        object.__setattr__(self, "imgsz", as_size(self.imgsz))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        check_mode(self.mode)
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {self.preprocess!r}")
        check_counts(batch=self.batch, decode_threads=self.decode_threads)
        self.thresholds  # their ranges, checked in one place

    @property
    def thresholds(self) -> Thresholds:
        """The selection thresholds of these settings."""
        return Thresholds(conf=self.conf, iou=self.iou, max_det=self.max_det, multi_label=self.multi_label,
                          agnostic=self.agnostic, classes=self.classes)

    @property
    def validating(self) -> bool:
        """Whether these are a validator's settings (its letterbox, its IoU, boxes kept in input pixels too)."""
        return self.preprocess == "val"

    @property
    def square_size(self) -> int | None:
        """The one-number size of a square input (the longer side), as val, quantize and bench report it."""
        return max(self.imgsz) if self.imgsz else None

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values."""
        d = super().to_dict()
        d["imgsz"] = list(self.imgsz) if self.imgsz else None
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d


@dataclass(frozen=True)
class LoadOptions(_Settings):
    """How the model file is loaded: the backend (None: the reader of the file's suffix), device, precision (None: the
    default fp32, or what the file was saved in), intra-op threads (None: the runtime's, or this machine's cores
    shared out between workers), the branch of an end-to-end checkpoint, how an int8 input is quantized, and
    deterministic session options."""

    backend: str | None = None
    device: str = "cpu"
    precision: str | None = None
    threads: int | None = None
    head_branch: str | None = None  # end-to-end checkpoints: "one2one" or "one2many" (CLI --head)
    int8_input: str = "round"
    deterministic: bool = False

    def __post_init__(self) -> None:
        """Values that cannot be right anywhere refused, naming them (a backend's own limits are its registry's)."""
        if self.threads is not None:
            check_counts(threads=self.threads)
        if self.head_branch is not None and self.head_branch not in HEAD_BRANCHES:
            raise ValueError(f"head_branch (--head) must be one of {', '.join(HEAD_BRANCHES)}, got {self.head_branch!r}")
        if self.int8_input not in INT8_INPUT:
            raise ValueError(f"int8_input must be one of {', '.join(INT8_INPUT)}, got {self.int8_input!r}")

    def backend_kwargs(self) -> dict[str, Any]:
        """The options a backend is created with, those left at their default omitted."""
        out: dict[str, Any] = {}
        for name in ("precision", "threads", "head_branch"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.int8_input != "round":
            out["int8_input"] = self.int8_input
        if self.deterministic:
            out["deterministic"] = True
        return out

