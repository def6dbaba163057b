"""Predictor: source → letterbox → shape buckets → batches → backend → decode + NMS → results.

Batch invariance by construction: every image is letterboxed on its own (its input tensor
depends only on the image and the settings), and a batch only ever holds images of one input
shape. Images are decoded and letterboxed in a thread pool ahead of inference (cv2 releases the
GIL), batches are run as soon as a bucket is full, and results come back in input order.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterator

import numpy as np

from ..backends.base import Backend
from ..data.sources import SourceItem
from ..errors import BadImageError, InputNotFoundError
from ..heads import head_format
from ..resources import check_inference_memory
from ..settings import InferenceSettings
from ..types import Detections, Letterbox, Result
from .batching import ShapeBuckets
from .letterbox import letterbox, to_input, val_letterbox
from .postprocess import postprocess_stages


@dataclass
class StageTimes:
    """Seconds spent per stage over a run; decode and letterbox run in worker threads."""

    decode: float = 0.0
    letterbox: float = 0.0
    inference: float = 0.0
    nms: float = 0.0
    wait: float = 0.0  # inference thread idle, waiting for decoded images (input-bound when large)
    images: int = 0
    skipped: int = 0  # could not be read (corrupt, missing, too large)
    failed: int = 0  # read, but the runtime failed on them (alone, not only in a batch)
    batches: int = 0
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)

    def per_image_ms(self) -> dict[str, float]:
        """Milliseconds per image of each stage."""
        n = max(self.images, 1)
        return {k: 1000.0 * getattr(self, k) / n for k in ("decode", "letterbox", "inference", "nms", "wait")}

    def to_dict(self) -> dict:
        """Stage times, images per second and the batches run, as JSON values."""
        return {
            "images": self.images,
            "skipped": self.skipped,
            "failed": self.failed,
            "batches": self.batches,
            "wall_s": round(self.wall, 4),
            "images_per_s": round(self.images / self.wall, 3) if self.wall else None,
            "ms_per_image": {k: round(v, 3) for k, v in self.per_image_ms().items()},
            "errors": list(self.errors),
        }


def merge_times(parts: list[dict]) -> dict:
    """The stage times of several runs (shards) as one: per-image means weighted by each run's image count."""
    images = sum(p.get("images", 0) for p in parts)
    total = {k: sum(p.get("ms_per_image", {}).get(k, 0.0) * p.get("images", 0) for p in parts) / max(images, 1)
             for k in ("decode", "letterbox", "inference", "nms", "wait")}
    return {"images": images, "ms_per_image": {k: round(v, 3) for k, v in total.items()}}


DECODE_NICENESS = 19


def _lower_priority() -> None:
    """Run a decode thread at low OS priority: inference keeps the cores, decoding fills the gaps.

    On 2 cores a decode thread preempting one of the runtime's intra-op threads stalls every
    parallel kernel until it is rescheduled; at low priority decoding only uses idle time
    (measured in bench/predict_throughput.py). Linux only; elsewhere a no-op.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)
    except (AttributeError, OSError):
        pass


@dataclass
class _Decoded:
    index: int
    item: SourceItem
    tensor: np.ndarray | None
    lb: Letterbox | None
    error: Exception | None
    t_decode: float
    t_letterbox: float
    image: np.ndarray | None = None


class Predictor:
    """Runs a backend over many images with shared pre- and post-processing."""

    def __init__(self, backend: Backend, settings: InferenceSettings, keep_images: bool = False, keep_raw: int = 0):
        """``settings`` as :meth:`yoloparity.yolo_model.YoloModel.resolve` made them for this backend (a size, an IoU);
        ``keep_images`` attaches the decoded original to each result (for drawing), ``keep_raw`` the raw head output
        to the results of the first N images (for run records)."""
        if settings.imgsz is None:
            raise ValueError("the predictor runs resolved settings (an image size): YoloModel.resolve makes them")
        check_inference_memory(1, settings.imgsz)  # one image at the full size must fit; batches checked as formed
        self.backend = backend
        self.spec = backend.spec
        self.head = head_format(self.spec.head_format)
        self.settings = settings
        self.thresholds = settings.thresholds
        self.keep_images, self.keep_raw = keep_images, keep_raw
        self.times = StageTimes()
        self.notes: list[str] = []

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """One image → its input tensor (3, H, W) float32 and letterbox record."""
        o = self.settings
        if o.validating:
            padded, lb = val_letterbox(image, o.imgsz[0], o.mode, self.spec.stride, self.head.box_rule, self.spec.pad_value)
        else:
            padded, lb = letterbox(image, o.imgsz, o.mode, self.spec.stride, self.spec.pad_value)
        return to_input(padded), lb

    def _prepare_item(self, index: int, item: SourceItem) -> _Decoded:
        t0 = time.perf_counter()
        try:
            image = item.load()
        except (BadImageError, InputNotFoundError) as exc:
            return _Decoded(index, item, None, None, exc, time.perf_counter() - t0, 0.0)
        t1 = time.perf_counter()
        tensor, lb = self.prepare(image)
        kept = image if self.keep_images else None
        return _Decoded(index, item, tensor, lb, None, t1 - t0, time.perf_counter() - t1, kept)

    def _run_batch(self, group: list[_Decoded]) -> list[Result]:
        check_inference_memory(len(group), group[0].tensor.shape[1:])
        batch = np.stack([p.tensor for p in group])
        t0 = time.perf_counter()
        raw = self.backend.run(batch)
        t1 = time.perf_counter()
        results = []
        for k, p in enumerate(group):
            cands, kept, dets = postprocess_stages(raw[k], self.spec.head_format, p.lb, self.thresholds)
            # validation keeps the boxes as the head gave them too: a trainer's metric compares them in input pixels
            input_boxes = cands.boxes[kept].astype(np.float32) if self.settings.validating else None
            keep = p.index < self.keep_raw
            results.append(Result(p.item.path, dets, p.lb, self.spec.names, image=p.image, raw=raw[k].copy() if keep else None,
                                  input_boxes=input_boxes))
        t2 = time.perf_counter()
        self.times.inference += t1 - t0
        self.times.nms += t2 - t1
        self.times.batches += 1
        return results

    def _drain(self, done: dict[int, Result], next_out: int, progress) -> Iterator[Result]:
        """Yield the finished results that continue the input order from ``next_out``."""
        while next_out in done:
            result = done.pop(next_out)
            next_out += 1
            if result.ok:
                self.times.images += 1
            if progress:
                progress(1)
            yield result

    def _run_into(self, group: list[_Decoded], done: dict[int, Result]) -> None:
        """Run a batch; when it fails (and not --strict), run its images one by one, so one image the runtime
        cannot take fails alone (``failed``, with the reason) and its neighbours get the results they would get in
        any batch."""
        try:
            results = self._run_batch(group)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if self.settings.strict:
                raise
            if len(group) > 1:
                for p in group:
                    self._run_into([p], done)
                return
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            p = group[0]
            error = f"{p.item.path}: inference failed ({type(exc).__name__}: {reason})"
            self.times.failed += 1
            self.times.errors.append(error)
            results = [Result(p.item.path, Detections.empty(), p.lb, self.spec.names, failed=True, error=error)]
        for p, r in zip(group, results):
            done[p.index] = r

    def run(self, items: list[SourceItem], progress: Callable[[int], None] | None = None) -> Iterator[Result]:
        """Yield one :class:`Result` per item, in input order (bad images carry ``error``)."""
        self.times = StageTimes()
        start = time.perf_counter()
        done: dict[int, Result] = {}
        next_out = 0
        buckets: ShapeBuckets[_Decoded] = ShapeBuckets(self.settings.batch)
        lookahead = max(self.settings.batch * 2, 8)
        with ThreadPoolExecutor(max_workers=max(self.settings.decode_threads, 1), thread_name_prefix="yp-decode",
                                initializer=_lower_priority) as pool:
            queue = iter(enumerate(items))
            futures = deque(pool.submit(self._prepare_item, i, item) for i, item in islice(queue, lookahead))
            while futures:
                t_wait = time.perf_counter()
                prepared = futures.popleft().result()
                self.times.wait += time.perf_counter() - t_wait
                for i, item in islice(queue, 1):
                    futures.append(pool.submit(self._prepare_item, i, item))
                self.times.decode += prepared.t_decode
                self.times.letterbox += prepared.t_letterbox
                if prepared.error is not None:
                    if self.settings.strict:
                        raise prepared.error
                    self.times.skipped += 1
                    self.times.errors.append(str(prepared.error))
                    done[prepared.index] = Result(prepared.item.path, Detections.empty(), None, self.spec.names, error=str(prepared.error))
                else:
                    full = buckets.add(prepared.lb.input_hw, prepared)
                    if full:
                        self._run_into(full, done)
                    elif len(buckets) > 4 * lookahead:
                        # many distinct shapes: run the oldest bucket now to keep memory bounded
                        self._run_into(buckets.pop_oldest(), done)
                for result in self._drain(done, next_out, progress):
                    next_out += 1
                    yield result
            for group in buckets.drain():
                self._run_into(group, done)
            for result in self._drain(done, next_out, progress):
                next_out += 1
                yield result
        self.times.wall = time.perf_counter() - start
