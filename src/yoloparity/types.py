"""Core value types: Detections, Letterbox, ModelSpec.

They are plain frozen containers over NumPy arrays and JSON-able values, so a result can be
compared, saved and shipped between machines without the model that made it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class JsonReport:
    """The base of every command's result (val, quantize, audit, compare, bench, predict_files): a typed object in
    Python, the same content as JSON for machines. Subclasses say what their JSON holds in :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (the schema the command's ``--json`` writes)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what its JSON holds")

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as a JSON string (values JSON does not know are written with ``str``)."""
        return json.dumps(self.to_dict(), indent=indent, default=str)


@dataclass(frozen=True, eq=False)
class Detections:
    """One image's detections as parallel arrays (struct of arrays).

    ``boxes`` are float32 xyxy in original-image pixels, ``scores`` float32, ``class_ids`` int32.
    Shapes and dtypes are checked at construction, so a wrong array fails here and not later
    inside a metric. Filter with a boolean mask: ``dets[dets.scores > 0.5]``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes)
        scores = np.asarray(self.scores)
        class_ids = np.asarray(self.class_ids)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes must have shape (n, 4), got {boxes.shape}")
        n = boxes.shape[0]
        if scores.shape != (n,):
            raise ValueError(f"Detections.scores must have shape ({n},), got {scores.shape}")
        if class_ids.shape != (n,):
            raise ValueError(f"Detections.class_ids must have shape ({n},), got {class_ids.shape}")
        if boxes.dtype != np.float32 or scores.dtype != np.float32:
            raise TypeError(f"Detections boxes/scores must be float32, got {boxes.dtype}/{scores.dtype}")
        if class_ids.dtype != np.int32:
            raise TypeError(f"Detections.class_ids must be int32, got {class_ids.dtype}")
        for name, arr in (("boxes", boxes), ("scores", scores), ("class_ids", class_ids)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls) -> "Detections":
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: Any) -> "Detections":
        """Select detections by boolean mask, integer array or slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index])

    def counts_per_class(self) -> dict[int, int]:
        """Detections per class id."""
        ids, counts = np.unique(self.class_ids, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}


@dataclass(frozen=True)
class Letterbox:
    """How one image was fitted into the network input.

    ``scale`` is the resize ratio, ``pad`` the (left, top) border in input pixels as the reference
    computes it (possibly half-pixel), ``pad_px`` the integer (left, top, right, bottom) border
    actually added. ``orig_hw`` and ``input_hw`` are (height, width). ``mapping`` says how boxes go
    back to the original image, as the reference of that pipeline does it: ``"shapes"`` recomputes
    gain and pads from the two shapes (predict), ``"ratio_pad"`` uses the stored gains and pads
    (validation, where the image was first resized on its own). ``gain_xy`` is the (x, y) gain of a
    validation record — the resized side over the original side, per axis, as Ultralytics 8.4 maps
    boxes back (YOLOv5 uses the one ``scale``).
    """

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale: float
    pad: tuple[float, float]
    pad_px: tuple[int, int, int, int]
    mapping: str = "shapes"
    gain_xy: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The letterbox as JSON values (run records store it per image)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Letterbox":
        """A letterbox from its JSON form (older records without ``mapping`` or ``gain_xy`` read too)."""
        gain_xy = d.get("gain_xy")
        return cls(tuple(d["orig_hw"]), tuple(d["input_hw"]), float(d["scale"]), tuple(d["pad"]), tuple(d["pad_px"]),
                   d.get("mapping", "shapes"), tuple(gain_xy) if gain_xy else None)


# the metadata key under which every exported file (ONNX, OpenVINO sidecar, TFLite) carries its ModelSpec as JSON
SPEC_KEY = "yoloparity.spec"

# the two heads an end-to-end checkpoint (YOLOv10, YOLO26) carries: one2one (top-k, no NMS) and one2many (NMS)
HEAD_BRANCHES = ("one2one", "one2many")

# the selection defaults every command shares (the references' predict defaults); options types take them from here
DEFAULT_CONF = 0.25
DEFAULT_MAX_DET = 300
DEFAULT_VAL_CONF = 0.001  # the reference validators' confidence threshold (mAP counts low-score detections too)


def check_counts(**counts: int) -> None:
    """Each named count is a whole number >= 1 (``--batch``, ``--imgsz``, ``--decode-threads`` …), else a clear error."""
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True)
class Thresholds:
    """How candidates are selected. ``iou=None`` means the head format's reference default (v5 0.45, v8/11 0.7)."""

    conf: float = DEFAULT_CONF
    iou: float | None = None
    max_det: int = DEFAULT_MAX_DET
    multi_label: bool = False
    agnostic: bool = False
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0:
            raise ValueError(f"conf must be in [0, 1], got {self.conf}")
        if self.iou is not None and not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")


@dataclass(frozen=True)
class ModelSpec:
    """The contract that travels with a model file (like timm's ``PretrainedCfg``).

    ``head_format`` names the raw output's format (:mod:`yoloparity.heads`: ``v5``, ``v8``, ``e2e``, ``dets``), which
    also carries the family's reference conventions: default IoU thresholds and how boxes are mapped back to
    the original image.
    Channel order and layout are not fields: every network here takes RGB NCHW (a NHWC LiteRT file
    is the litert backend's business), and COCO category ids belong to the dataset, not the model.
    """

    names: tuple[str, ...]
    head_format: str
    stride: int = 32
    strides: tuple[int, ...] = (8, 16, 32)
    imgsz: tuple[int, int] = (640, 640)
    # where ``imgsz`` came from (a checkpoint's training arguments, a file's static input, its metadata, the default):
    # it is every command's default image size, and the run summaries say why
    imgsz_from: str = ""
    pad_value: int = 114
    num_anchors: int = 1  # anchors per grid cell: 3 for YOLOv5 (from the checkpoint's yaml), 1 anchor-free
    source: str = ""
    sha256: str = ""
    family: str = ""
    # end-to-end checkpoints (YOLOv10, YOLO26) carry two head branches: "one2one" (top-k, head format "e2e") or
    # "one2many" (NMS, head format "v8"); "" for every other model. ``writer`` is the library version that saved the checkpoint.
    head_branch: str = ""
    writer: str = ""
    # what the checkpoint says of itself (Ultralytics writes ``date``, ``version``, ``train_args``; a recovered file
    # a ``reconstructed_from`` record): JSON values only, carried into every export, record and report
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.head_format, str) or not self.head_format:
            raise ValueError(f"ModelSpec.head_format must name a head format, got {self.head_format!r}")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "imgsz", tuple(int(s) for s in self.imgsz))

    @property
    def nc(self) -> int:
        """The number of classes."""
        return len(self.names)

    @property
    def square_size(self) -> int:
        """The one-number image size of commands that take one (val, quantize, bench, a TFLite export): the longer
        side of ``imgsz``, as the references read a training size."""
        return max(self.imgsz)

    def size_note(self, used: int | tuple[int, ...] | None = None) -> str:
        """'imgsz 320 (the checkpoint's train_args['imgsz'])' for a summary: the size a run used and, when it is the
        model's own, where that came from."""
        if used is None or (tuple(used) if isinstance(used, (list, tuple)) else (used, used)) == self.imgsz \
                or (isinstance(used, int) and used == self.square_size):
            shown = self.imgsz[0] if self.imgsz[0] == self.imgsz[1] else f"{self.imgsz[0]}x{self.imgsz[1]}"
            return f"imgsz {shown} (the model's own: {self.imgsz_from or 'its file'})"
        shown = used if isinstance(used, int) else "x".join(str(v) for v in used)
        return f"imgsz {shown} (asked for; the model's own is {'x'.join(str(v) for v in self.imgsz)})"

    def to_json(self) -> str:
        """The spec as the JSON string exported files carry (sorted keys)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        """A spec from its JSON string; keys this version does not know are ignored, and ``head`` (files written before
        the field was named ``head_format``) is read as ``head_format``."""
        data = json.loads(text)
        if "head" in data and "head_format" not in data:
            data["head_format"] = data.pop("head")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Result:
    """One image's prediction: where it came from, how it was fitted, what was found."""

    path: str
    detections: Detections
    letterbox: Letterbox | None
    names: tuple[str, ...] = field(default=(), repr=False)
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # kept only when asked
    raw: np.ndarray | None = field(default=None, repr=False, compare=False)  # raw head output, kept only when asked
    failed: bool = False  # with error: the image was read but inference failed (else it could not be read: skipped)
    # validation only: the detections' boxes in network-input pixels as the head produced them (not clipped)
    input_boxes: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the image was read and predicted (no ``error``)."""
        return self.error is None
