"""The images a ``quantize`` run works on: read, letterboxed and split once, then handed down as typed data.

Why one pass: calibration, the float and int8 accuracy measurements, every accuracy-control step, the saturation
emulation, the sensitivity probe and the latency sample all want the same images at the same static square input.
Before, each of them re-read and re-letterboxed its images from the dataset (loaded and split twice); now
:func:`load_quant_images` reads each file once, keeps its letterboxed pixels (uint8, 1.2 MB at 640 — a fixed cost
per dataset image, not per calibration image) and its :class:`~yoloparity.types.Letterbox` record, and every stage
takes :class:`QuantImage` objects. A file that cannot be read is named in ``skipped`` and left out of every set
before the split, so the calibration count is a count of usable images.

Which images, as a trainer would use the dataset: a data.yaml with a ``train`` split of its own calibrates on
training images and judges on the whole ``val`` split, all of it held out; without one (or when ``train`` and
``val`` are the same images, as in a validation-only subset) the val split is cut in two by a stable hash, and the
report says so.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..data.datasets import Dataset, DatasetError, ImageEntry, check_model_classes, load_dataset, train_split_files
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
    calibration_split: str = "val"  # "train": calibrated on the train split, every measured image held out
    notes: tuple[str, ...] = ()  # what the split had to settle (fewer train images than asked for, shared files)

    @property
    def measured(self) -> list[QuantImage]:
        """Every image accuracy is measured on, sorted by dataset id, each once: the held-out images, and the
        calibration images too when they come from the same split."""
        if self.calibration_split == "train":
            return sorted(self.held_out, key=lambda image: image.entry.id)
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
    boxed, lb = val_letterbox(image, imgsz, mode="square", stride=spec.stride, rule=head_format(spec.head_format).box_rule,
                              pad_value=spec.pad_value)
    return QuantImage(entry, np.ascontiguousarray(boxed), lb)


def _check_counts(data: str, available: int | None, calib_images: int, val_images: int | None) -> None:
    """The counts asked for are whole numbers >= 1 and, when calibration shares the split (``available`` given), the
    split holds that many images."""
    if calib_images < 1:
        raise CalibrationError(data, f"--calib-images must be at least 1, got {calib_images}")
    if available is not None and available < calib_images:
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
    _check_counts(data, len(dataset.images), calib_images, val_images)
    wanted_held = len(dataset.images) if val_images is None else val_images
    images, skipped = _read_in_order(dataset.images, calib_images + wanted_held, imgsz, spec, threads, progress)
    calibration, held_out = images[:calib_images], images[calib_images:]
    if len(calibration) < calib_images:
        raise CalibrationError(data, f"{calib_images} calibration images asked for but only {len(calibration)} of "
                                     f"{len(dataset.images)} could be read (first problem: {skipped[0] if skipped else '-'})")
    overlap = not held_out
    if overlap:  # too small to keep apart: measured on the calibration images, and said so
        held_out = calibration[:wanted_held]
    held_out = sorted(held_out, key=lambda image: image.entry.id)
    measured_ids = {image.entry.id for image in calibration + held_out}
    measured = dataset.subset([e for e in dataset.images if e.id in measured_ids])
    return QuantImages(measured, calibration, held_out, overlap, skipped, imgsz)


def _read_in_order(entries: list[ImageEntry], wanted: int, imgsz: int, spec: ModelSpec, threads: int,
                   progress: Callable[[int], None] | None) -> tuple[list[QuantImage], list[str]]:
    """The first ``wanted`` readable images of ``entries`` in stable hash order, each read and letterboxed once, and
    the unreadable ones met on the way (named); images beyond what is needed are never read."""
    ordered = sorted(entries, key=order_key)
    images: list[QuantImage] = []
    skipped: list[str] = []
    start = 0
    with ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="yp-quant-read") as pool:
        while start < len(ordered) and len(images) < wanted:
            chunk = ordered[start:start + min(wanted - len(images), max(threads, 1) * 8)]
            start += len(chunk)
            for result in pool.map(lambda e: _letterbox_one(e, imgsz, spec), chunk):
                if isinstance(result, str):
                    skipped.append(result)
                elif len(images) < wanted:
                    images.append(result)
                if progress:
                    progress(1)
    return images, skipped


def load_split_images(train: Dataset, val: Dataset, data: str, spec: ModelSpec, imgsz: int, calib_images: int,
                      val_images: int | None, threads: int = 2, progress: Callable[[int], None] | None = None,
                      ) -> QuantImages:
    """Calibration images from the ``train`` split (the first ``calib_images`` readable ones in hash order; all of
    them, said so, when it has fewer) and the whole ``val`` split held out (its first ``val_images`` in hash order
    when given). A file listed in both splits is not calibrated on."""
    _check_counts(data, None, calib_images, val_images)  # a smaller train split is used whole, said so
    notes = []
    val_files = {os.path.abspath(e.path) for e in val.images}
    candidates = [e for e in train.images if os.path.abspath(e.path) not in val_files]
    if len(candidates) < len(train.images):
        notes.append(f"{len(train.images) - len(candidates)} images of the train split are also in the val split: "
                     "they are judged on, not calibrated on")
    calibration, skipped = _read_in_order(candidates, calib_images, imgsz, spec, threads, progress)
    if not calibration:
        raise CalibrationError(data, f"none of the {len(candidates)} train images could be read (first problem: "
                                     f"{skipped[0] if skipped else '-'})")
    if len(calibration) < calib_images:
        notes.append(f"{calib_images} calibration images asked for; the train split has {len(calibration)} readable "
                     f"ones: calibrated on all {len(calibration)}")
    held_out, skipped_val = _read_in_order(val.images, len(val.images) if val_images is None else val_images, imgsz,
                                           spec, threads, progress)
    if not held_out:
        raise CalibrationError(data, "no image of the val split could be read to judge the int8 model on")
    held_out = sorted(held_out, key=lambda image: image.entry.id)
    measured = val.subset([image.entry for image in held_out])
    return QuantImages(measured, calibration, held_out, False, skipped + skipped_val, imgsz, "train", tuple(notes))


def separate_train_split(data: str, val: Dataset) -> Dataset | None:
    """The data.yaml's ``train`` split when it has one with images of its own, else None (no ``train`` key, or the
    same images as ``val``, as a validation-only subset lists them)."""
    files = train_split_files(data)
    if not files or {os.path.abspath(f) for f in files} <= {os.path.abspath(e.path) for e in val.images}:
        return None
    try:
        return load_dataset(data, split="train")
    except DatasetError:
        return None


def write_calibration_nhwc(images: QuantImages, path: str) -> None:
    """The calibration inputs as one (N, H, W, 3) float32 ``.npy`` (the layout the TFLite converter reads), written
    one image at a time through a memory map: this process never holds more than one image of it."""
    first = images.calibration[0].tensor()[0]
    shape = (len(images.calibration), first.shape[1], first.shape[2], 3)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    for i, image in enumerate(images.calibration):
        out[i] = image.tensor()[0].transpose(1, 2, 0)
    out.flush()
    del out


def describe(images: QuantImages) -> str:
    """One line: how many images calibrate and from which split, how many are judged on, how many could not be
    read — each count true (a dataset too small to hold images out says that the two sets are the same images)."""
    if images.calibration_split == "train":
        text = (f"{len(images.calibration)} calibration images from the train split; {len(images.held_out)} val "
                f"images held out and judged on")
    elif images.overlap:
        text = (f"{len(images.calibration)} calibration images from the val split (no train split of its own); none "
                f"left to hold out: the drop is measured on {len(images.held_out)} of the calibration images")
    else:
        text = (f"{len(images.calibration)} calibration images from the val split (no train split of its own), "
                f"{len(images.held_out)} others held out ({len(images.measured)} measured in all)")
    if images.skipped:
        text += f"; {len(images.skipped)} unreadable and left out (first: {os.path.basename(images.skipped[0])[:120]})"
    return text


def read_images(data: str, spec: ModelSpec, options, log: Callable[[str], None], progress_factory) -> QuantImages:
    """The dataset of a quantize run, loaded once, its images read, letterboxed and split once
    (:func:`load_quant_images`), at ``options.imgsz`` or, without one, the model's own size (``spec``)."""
    imgsz = options.imgsz or spec.square_size
    dataset = load_dataset(data)  # the val split, read once
    warning = check_model_classes(dataset, spec.names, data)
    if warning:
        log(f"warning: {warning}")
    train = separate_train_split(data, dataset) if data.endswith((".yaml", ".yml")) else None
    held = options.val_images if options.val_images is not None else len(dataset.images)
    if train is not None:
        total = min(len(train.images), options.calib_images) + min(len(dataset.images), held)
    else:
        total = min(len(dataset.images), options.calib_images + held)
    bar = progress_factory(total, "read images") if progress_factory else None
    try:
        if train is not None:
            images = load_split_images(train, dataset, data, spec, imgsz, options.calib_images,
                                       options.val_images, options.threads, progress=bar.update if bar else None)
        else:
            images = load_quant_images(dataset, data, spec, imgsz, options.calib_images, options.val_images,
                                       options.threads, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    log(f"images: {describe(images)}")
    return images


def overlap_notes(images: QuantImages) -> list[str]:
    """The notes every quantize report starts with: calibration and measurement not kept apart, unreadable images."""
    notes = list(images.notes)
    if images.calibration_split == "val":
        notes.append("the dataset has no train split of its own: calibration images were taken from the val split "
                     "and the rest held out")
    if images.overlap:
        notes.append("the dataset is too small to keep calibration and validation images apart: the drop is measured "
                     "on images that were also used for calibration, which flatters the int8 model")
    if images.skipped:
        notes.append(f"{len(images.skipped)} images could not be read and were left out of calibration and measurement")
    return notes
