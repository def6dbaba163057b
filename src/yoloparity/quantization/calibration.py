"""Calibration and drop-measurement images: a deterministic, disjoint choice from a dataset.

Why deterministic: the same command must give the same int8 model and the same report, so the
choice is a stable hash order of the image file names (not a random draw, not the first N, which
in COCO-style folders are often of one kind). Why disjoint: a drop measured on the images the
ranges were calibrated on flatters the int8 model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..data.datasets import Dataset, ImageEntry
from ..data.sources import read_image
from ..errors import YoloParityError
from ..pipeline.letterbox import to_input, val_letterbox


class CalibrationError(YoloParityError):
    """Not enough images, or images that cannot be used for calibration."""


@dataclass(frozen=True)
class ImageSplit:
    """A dataset's images split into disjoint calibration and held-out validation sets."""
    calibration: list[ImageEntry]
    validation: list[ImageEntry]
    overlap: bool  # True when the dataset was too small to keep the two apart


def order_key(entry: ImageEntry) -> str:
    """The stable hash order calibration images are chosen in (by file name, not by folder order)."""
    return hashlib.sha1(os.path.basename(entry.path).encode()).hexdigest()


def split_images(dataset: Dataset, data_path: str, calib_images: int, val_images: int | None) -> ImageSplit:
    """``calib_images`` for calibration and up to ``val_images`` others (all others if None) for the drop."""
    entries = sorted(dataset.images, key=order_key)
    if calib_images < 1:
        raise CalibrationError(data_path, f"--calib-images must be at least 1, got {calib_images}")
    if len(entries) < calib_images:
        raise CalibrationError(
            data_path, f"{calib_images} calibration images asked for but the dataset has only {len(entries)}; "
                       f"use --calib-images {len(entries)} or fewer"
        )
    calibration = entries[:calib_images]
    rest = entries[calib_images:]
    overlap = not rest
    validation = rest if rest else entries  # too small to keep apart: measured on all, and said so
    if val_images is not None:
        if val_images < 1:
            raise CalibrationError(data_path, f"--val-images must be at least 1, got {val_images}")
        validation = validation[:val_images]
    return ImageSplit(calibration, sorted(validation, key=lambda e: e.id), overlap)


def preprocess(path: str, imgsz: int, stride: int, rule: str, pad_value: int = 114) -> np.ndarray:
    """One image as validation feeds it at a static square shape: (1, 3, imgsz, imgsz) float32.

    ``rule`` is the head format's ``box_rule`` (``yolov5``/``ultralytics``), as the predictor passes it.
    """
    image = read_image(path)
    boxed, _ = val_letterbox(image, imgsz, mode="square", stride=stride, rule=rule, pad_value=pad_value)
    return to_input(boxed)[None]


class TensorReader(CalibrationDataReader):
    """ONNX Runtime ``CalibrationDataReader`` over inputs preprocessed beforehand: one (1, 3, H, W) tensor per
    ``get_next`` (the sensitivity probe's reader; calibration itself streams, see :mod:`.stream_calibration`)."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]):
        self.input_name, self.tensors = input_name, tensors
        self._next = 0

    def get_next(self) -> dict | None:
        """The next input as ONNX Runtime wants it, or None when done."""
        if self._next >= len(self.tensors):
            return None
        self._next += 1
        return {self.input_name: self.tensors[self._next - 1]}

    def rewind(self) -> None:
        """Start the inputs again."""
        self._next = 0

    def __len__(self) -> int:
        return len(self.tensors)
