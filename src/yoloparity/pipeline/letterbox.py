"""Letterbox: fit one image into the network input exactly as the reference implementations do.

An image's input tensor depends only on the image and the settings (image size, stride, mode),
never on its batch mates: that is what makes batched results equal single-image results.

* ``square``: scale to fit ``imgsz`` and pad to ``imgsz`` x ``imgsz``.
* ``rect``: scale to fit ``imgsz`` and pad only up to the next multiple of the stride (the
  references' ``auto=True``), the smallest input that holds the image.

Resizing is one cv2 INTER_LINEAR resize of the original; the padding (gray 114) is split
between both sides with the references' ``round(d -/+ 0.1)`` rule.

Validation follows the reference validators instead (:func:`val_letterbox`): resize the long
side to ``imgsz`` on its own (YOLOv5: INTER_AREA when shrinking; Ultralytics: INTER_LINEAR),
then pad without scaling into the shape the reference gives a batch holding only this image —
``ceil(s * imgsz / stride + 0.5) * stride`` per side, ``s`` from the aspect ratio — the
reference's batch-1 figure, reproduced at every batch size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..settings import check_mode
from ..types import Letterbox


# the families' letterbox and box-mapping conventions (a head format names its family's: HeadFormat.box_rule)
RULES = ("yolov5", "ultralytics")


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`RULES`; a clear error otherwise."""
    if rule not in RULES:
        raise ValueError(f"letterbox rule must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def _fit(orig_hw: tuple[int, int], new_hw: tuple[int, int], scaleup: bool = True) -> tuple[float, tuple[int, int]]:
    h, w = orig_hw
    r = min(new_hw[0] / h, new_hw[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    return r, (int(round(w * r)), int(round(h * r)))


def input_shape(orig_hw: tuple[int, int], imgsz: tuple[int, int], mode: str = "rect", stride: int = 32) -> tuple[int, int]:
    """The (height, width) an image of ``orig_hw`` is fed at; used to form shape buckets."""
    if check_mode(mode) == "square":
        return int(imgsz[0]), int(imgsz[1])
    _, (uw, uh) = _fit(orig_hw, imgsz)
    return uh + (imgsz[0] - uh) % stride, uw + (imgsz[1] - uw) % stride


def letterbox(
    image: np.ndarray,
    imgsz: tuple[int, int] | int = 640,
    mode: str = "rect",
    stride: int = 32,
    pad_value: int = 114,
) -> tuple[np.ndarray, Letterbox]:
    """Resize and pad a BGR uint8 image (H, W, 3); returns the padded image and its record."""
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    orig_hw = (int(image.shape[0]), int(image.shape[1]))
    target = input_shape(orig_hw, imgsz, mode, stride)
    r, (uw, uh) = _fit(orig_hw, imgsz)
    dw, dh = (target[1] - uw) / 2, (target[0] - uh) / 2
    if (orig_hw[1], orig_hw[0]) != (uw, uh):
        image = cv2.resize(image, (uw, uh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    record = Letterbox(orig_hw=orig_hw, input_hw=target, scale=r, pad=(dw, dh), pad_px=(left, top, right, bottom))
    return image, record


def val_input_shape(orig_hw: tuple[int, int], imgsz: int, stride: int = 32, pad: float = 0.5) -> tuple[int, int]:
    """The reference validators' rect shape for a batch holding only this image."""
    h, w = orig_hw
    ar = h / w
    s = (ar, 1.0) if ar < 1 else ((1.0, 1.0 / ar) if ar > 1 else (1.0, 1.0))
    return tuple(int(math.ceil(v * imgsz / stride + pad)) * stride for v in s)  # type: ignore[return-value]


def val_letterbox(
    image: np.ndarray,
    imgsz: int = 640,
    mode: str = "rect",
    stride: int = 32,
    rule: str = "yolov5",
    pad_value: int = 114,
) -> tuple[np.ndarray, Letterbox]:
    """Fit an image as the reference validator of its family does (see the module docstring)."""
    h0, w0 = int(image.shape[0]), int(image.shape[1])
    r = imgsz / max(h0, w0)
    if r != 1:
        if check_rule(rule) == "yolov5":
            size = (math.ceil(w0 * r), math.ceil(h0 * r))
            interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        else:
            size = (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz))
            interp = cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
    h, w = int(image.shape[0]), int(image.shape[1])
    target = val_input_shape((h0, w0), imgsz, stride) if mode == "rect" else (imgsz, imgsz)
    r2 = min(target[0] / h, target[1] / w, 1.0)
    uw, uh = int(round(w * r2)), int(round(h * r2))
    if (w, h) != (uw, uh):
        image = cv2.resize(image, (uw, uh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (target[1] - uw) / 2, (target[0] - uh) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    record = Letterbox(orig_hw=(h0, w0), input_hw=target, scale=(h / h0) * r2, pad=(dw, dh),
                       pad_px=(left, top, right, bottom), mapping="ratio_pad", gain_xy=((w / w0) * r2, (h / h0) * r2))
    return image, record


def to_input(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Letterboxed BGR uint8 (H, W, 3) → RGB float32 (3, H, W) in 0..1, written into ``out`` if given."""
    if out is None:
        out = np.empty((3, image.shape[0], image.shape[1]), np.float32)
    # per contiguous channel plane: 3x faster than one strided transpose, and bitwise the same
    for plane, channel in zip(out, reversed(cv2.split(image))):
        np.divide(channel, np.float32(255), out=plane, dtype=np.float32)
    return out


def boxes_to_original(boxes: np.ndarray, lb: Letterbox, rule: str = "yolov5") -> np.ndarray:
    """Map xyxy boxes from input pixels back to original-image pixels and clip, per reference family.

    ``yolov5`` (YOLOv5's ``scale_boxes``): one gain and half-pixel pads recomputed from the two shapes.
    ``ultralytics`` (Ultralytics 8.4's ``scale_boxes``): a gain per axis — each resized side (rounded, as the
    letterbox rounded it) over the original side — and the integer pads the letterbox added.
    Validation records (``mapping="ratio_pad"``) use the stored gains and pads instead.
    """
    v5 = check_rule(rule) == "yolov5"
    boxes = np.array(boxes, dtype=np.float32, copy=True)
    (h0, w0), (h1, w1) = lb.orig_hw, lb.input_hw
    if lb.mapping == "ratio_pad":  # validation: the stored gains and pads (integer ones for Ultralytics)
        if v5 or lb.gain_xy is None:
            gain_x = gain_y = lb.scale
        else:
            gain_x, gain_y = lb.gain_xy
        pad_x, pad_y = lb.pad if v5 else lb.pad_px[:2]
    elif v5:
        gain_x = gain_y = min(h1 / h0, w1 / w0)
        pad_x, pad_y = (w1 - w0 * gain_x) / 2, (h1 - h0 * gain_y) / 2
    else:
        gain = min(h1 / h0, w1 / w0)
        new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
        gain_x, gain_y = new_w / w0, new_h / h0
        pad_x, pad_y = round((w1 - new_w) / 2 - 0.1), round((h1 - new_h) / 2 - 0.1)
    boxes[:, [0, 2]] -= np.float32(pad_x)
    boxes[:, [1, 3]] -= np.float32(pad_y)
    boxes[:, [0, 2]] /= np.float32(gain_x)
    boxes[:, [1, 3]] /= np.float32(gain_y)
    boxes[:, 0] = boxes[:, 0].clip(0, w0)
    boxes[:, 2] = boxes[:, 2].clip(0, w0)
    boxes[:, 1] = boxes[:, 1].clip(0, h0)
    boxes[:, 3] = boxes[:, 3].clip(0, h0)
    return boxes
