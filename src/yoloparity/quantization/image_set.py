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
from .calibration import CalibrationError, split_images


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


def load_quant_images(data: str, spec: ModelSpec, imgsz: int, calib_images: int, val_images: int | None,
                      threads: int = 2, progress: Callable[[int], None] | None = None) -> QuantImages:
    """Load ``data`` once, read and letterbox each image once (``threads`` at a time), drop the unreadable ones
    (named in ``skipped``), then split the rest: ``calib_images`` for calibration by a stable hash order, up to
    ``val_images`` others held out for the drop (see :func:`.calibration.split_images`)."""
    dataset = load_dataset(data)
    with ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="yp-quant-read") as pool:
        loaded = []
        for result in pool.map(lambda e: _letterbox_one(e, imgsz, spec), dataset.images):
            loaded.append(result)
            if progress:
                progress(1)
    skipped = [r for r in loaded if isinstance(r, str)]
    images = {r.entry.id: r for r in loaded if isinstance(r, QuantImage)}
    if not images:
        raise CalibrationError(data, f"none of the {len(dataset.images)} images could be read: {skipped[:3]}")
    usable = dataset.subset([e for e in dataset.images if e.id in images])
    split = split_images(usable, data, calib_images, val_images)
    calibration = [images[e.id] for e in split.calibration]
    held_out = [images[e.id] for e in split.validation]
    measured_ids = {e.id for e in split.calibration} | {e.id for e in split.validation}
    measured = usable.subset([e for e in usable.images if e.id in measured_ids])
    return QuantImages(measured, calibration, held_out, split.overlap, skipped, imgsz)


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
    """The dataset of a quantize run, read, letterboxed and split once (:func:`.image_set.load_quant_images`)."""
    total = len(load_dataset(data).images) if progress_factory else 0
    bar = progress_factory(total, "read images") if progress_factory else None
    try:
        images = load_quant_images(data, spec, options.imgsz, options.calib_images, options.val_images,
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
