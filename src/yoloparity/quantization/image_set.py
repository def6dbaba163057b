"""The images a ``quantize`` run works on: read, letterboxed and split once, then handed down as typed data.

Why one pass: calibration, the float and int8 accuracy measurements, every accuracy-control step, the saturation
emulation, the sensitivity probe and the latency sample all want the same images at the same static square input.
Before, each of them re-read and re-letterboxed its images from the dataset (loaded and split twice); now
:func:`load_quant_images` reads each file once, keeps its letterboxed pixels (uint8, 1.2 MB at 640 — a fixed cost
per dataset image, not per calibration image) and its :class:`~yoloparity.types.Letterbox` record, and every stage
takes :class:`QuantImage` objects. A file that cannot be read is named in ``skipped`` and left out of every set
before the split, so the calibration count is a count of usable images.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..data.datasets import Dataset, ImageEntry, load_dataset
from ..data.sources import read_image
from ..errors import YoloParityError
from ..heads import head_format
from ..pipeline.letterbox import to_input, val_letterbox
from ..types import Letterbox, ModelSpec
from .calibration import CalibrationError, order_key


@dataclass(frozen=True)
class QuantImage:
    """One dataset image letterboxed once as validation feeds it (square, the family's rule): its pixels and the
    record that maps boxes back to the original image."""
    entry: ImageEntry
    boxed: np.ndarray  # (imgsz, imgsz, 3) uint8 BGR, letterboxed
    letterbox: Letterbox

    def tensor(self) -> np.ndarray:
        """The network input (1, 3, imgsz, imgsz) float32 RGB in 0..1."""
        return to_input(self.boxed)[None]


@dataclass(frozen=True)
class QuantImages:
    """A dataset for quantize: its usable images letterboxed once, split into calibration and held-out images."""
    dataset: Dataset  # restricted to the images measured (calibration + held-out, unreadable ones dropped)
    calibration: list[QuantImage]
    held_out: list[QuantImage]
    overlap: bool  # the dataset was too small to keep the two apart: held-out images were also calibrated on
    skipped: list[str]  # unreadable files, with the reason
    imgsz: int

    @property
    def measured(self) -> list[QuantImage]:
        """Every image accuracy is measured on (calibration and held-out), sorted by dataset id, each once."""
        seen: dict[int, QuantImage] = {}
        for image in self.calibration + self.held_out:
            seen.setdefault(image.entry.id, image)
        return [seen[i] for i in sorted(seen)]

    def held_out_ids(self) -> list[int]:
        """Dataset ids of the held-out images."""
        return [image.entry.id for image in self.held_out]

    def calibration_batches(self, chunk: int = 1) -> Iterator[np.ndarray]:
        """The calibration inputs, ``chunk`` images at a time: (n, 3, imgsz, imgsz) float32."""
        for start in range(0, len(self.calibration), chunk):
            yield np.concatenate([image.tensor() for image in self.calibration[start:start + chunk]])


def _letterbox_one(entry: ImageEntry, imgsz: int, spec: ModelSpec) -> QuantImage | str:
    try:
        image = read_image(entry.path)
    except YoloParityError as exc:
        return str(exc)
    boxed, lb = val_letterbox(image, imgsz, mode="square", stride=spec.stride, rule=head_format(spec.head).box_rule,
                              pad_value=spec.pad_value)
    return QuantImage(entry, np.ascontiguousarray(boxed), lb)


def _check_counts(data: str, available: int, calib_images: int, val_images: int | None) -> None:
    if calib_images < 1:
        raise CalibrationError(data, f"--calib-images must be at least 1, got {calib_images}")
    if available < calib_images:
        raise CalibrationError(data, f"{calib_images} calibration images asked for but the dataset has only {available}; "
                                     f"use --calib-images {available} or fewer")
    if val_images is not None and val_images < 1:
        raise CalibrationError(data, f"--val-images must be at least 1, got {val_images}")


def load_quant_images(dataset: Dataset, data: str, spec: ModelSpec, imgsz: int, calib_images: int,
                      val_images: int | None, threads: int = 2, progress: Callable[[int], None] | None = None,
                      ) -> QuantImages:
    """Read and letterbox, once each, the images a run needs, in the stable hash order of
    :func:`.calibration.order_key`: the first ``calib_images`` readable ones calibrate, the next ``val_images``
    readable ones (all the others if None) are held out for the drop. Unreadable files are named in ``skipped`` and
    replaced by the next in order; images beyond what is needed are never read."""
    ordered = sorted(dataset.images, key=order_key)
    _check_counts(data, len(ordered), calib_images, val_images)
    wanted_held = len(ordered) if val_images is None else val_images
    calibration: list[QuantImage] = []
    held_out: list[QuantImage] = []
    skipped: list[str] = []
    start = 0
    with ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="yp-quant-read") as pool:
        while start < len(ordered):
            missing = calib_images - len(calibration) + wanted_held - len(held_out)
            if missing <= 0:
                break
            chunk = ordered[start:start + min(missing, max(threads, 1) * 8)]  # never read an image not needed
            start += len(chunk)
            for result in pool.map(lambda e: _letterbox_one(e, imgsz, spec), chunk):
                if isinstance(result, str):
                    skipped.append(result)
                elif len(calibration) < calib_images:
                    calibration.append(result)
                elif len(held_out) < wanted_held:
                    held_out.append(result)
                if progress:
                    progress(1)
    if len(calibration) < calib_images:
        raise CalibrationError(data, f"{calib_images} calibration images asked for but only {len(calibration)} of "
                                     f"{len(ordered)} could be read (first problem: {skipped[0] if skipped else '-'})")
    overlap = not held_out
    if overlap:  # too small to keep apart: measured on the calibration images, and said so
        held_out = calibration[:wanted_held]
    held_out = sorted(held_out, key=lambda image: image.entry.id)
    measured_ids = {image.entry.id for image in calibration + held_out}
    measured = dataset.subset([e for e in dataset.images if e.id in measured_ids])
    return QuantImages(measured, calibration, held_out, overlap, skipped, imgsz)


def calibration_nhwc(images: QuantImages) -> np.ndarray:
    """(N, H, W, 3) float32 calibration inputs (the layout the TFLite converter reads)."""
    return np.stack([image.tensor()[0].transpose(1, 2, 0) for image in images.calibration]).astype(np.float32)


def describe(images: QuantImages) -> str:
    """One line: how many images calibrate, how many are held out, how many could not be read."""
    text = (f"{len(images.calibration)} calibration images, {len(images.held_out)} held out "
            f"({len(images.measured)} measured in all)")
    if images.skipped:
        text += f"; {len(images.skipped)} unreadable and left out (first: {os.path.basename(images.skipped[0])[:120]})"
    return text


def read_images(data: str, spec: ModelSpec, options, log: Callable[[str], None], progress_factory) -> QuantImages:
    """The dataset of a quantize run, loaded once, its images read, letterboxed and split once
    (:func:`load_quant_images`)."""
    dataset = load_dataset(data)  # the only time the dataset file is read
    needed = options.calib_images + (options.val_images if options.val_images is not None else len(dataset.images))
    bar = progress_factory(min(len(dataset.images), needed), "read images") if progress_factory else None
    try:
        images = load_quant_images(dataset, data, spec, options.imgsz, options.calib_images, options.val_images,
                                   options.threads, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    log(f"images: {describe(images)}")
    return images


def overlap_notes(images: QuantImages) -> list[str]:
    """The notes every quantize report starts with: calibration and measurement not kept apart, unreadable images."""
    notes = []
    if images.overlap:
        notes.append("the dataset is too small to keep calibration and validation images apart: the drop is measured "
                     "on images that were also used for calibration, which flatters the int8 model")
    if images.skipped:
        notes.append(f"{len(images.skipped)} images could not be read and were left out of calibration and measurement")
    return notes
