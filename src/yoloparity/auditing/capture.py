"""Run one audit configuration and keep every stage of every image: the evidence for localization.

Images go through in chunks; within a chunk a configuration forms its own shape-bucketed batches of
its own batch size, exactly as ``predict`` does, and for each image we keep the decoded image's
digest, the letterboxed tensor, the raw head output, the candidates after the confidence filter,
the indices NMS kept and the final detections. Only one chunk of stages is held at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ..backends.registry import is_default_precision
from ..heads import Candidates
from ..pipeline.batching import shape_batches
from ..pipeline.postprocess import postprocess_stages
from ..settings import InferenceSettings, LoadOptions, as_size
from ..types import Detections, Letterbox, Thresholds
from ..yolo_model import YoloModel, load_model
from .spec import RunConfig


@dataclass
class ImageStages:
    """One image's evidence. A live run has every stage; a loaded run record has the letterbox and detections, and
    the raw output (hence candidates and NMS survivors) only for the images it kept raw — ``None`` marks what a
    record did not keep, and the comparison says what it could not localize."""

    path: str
    image_digest: str | None
    tensor: np.ndarray | None
    letterbox: Letterbox
    raw: np.ndarray | None
    candidates: Candidates | None
    kept: np.ndarray | None
    detections: Detections

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network input this image was letterboxed to."""
        return tuple(self.letterbox.input_hw)


class ConfigRunner:
    """One configuration, loaded once, run chunk by chunk."""

    def __init__(self, model_path: str, config: RunConfig, thresholds: Thresholds, imgsz: int | None,
                 deterministic: bool = False):
        load = LoadOptions(backend=config.backend, device=config.device, threads=config.threads or None,
                           precision=None if is_default_precision(config.precision) else config.precision,
                           head_branch=config.head_branch, deterministic=deterministic)
        self.model: YoloModel = load_model(config.model or model_path, options=load)
        asked = config.imgsz or imgsz
        self.predictor = self.model.predictor(InferenceSettings(
            imgsz=asked, mode=config.mode, batch=config.batch, conf=thresholds.conf, iou=thresholds.iou,
            max_det=thresholds.max_det))
        resolved = self.predictor.settings
        reshaped = resolved.mode != config.mode or (asked is not None and as_size(asked) != resolved.imgsz)
        self.shape_note = "; ".join(self.predictor.notes) if reshaped else None  # a static input changed the shape
        # the label says what runs: the file's own precision (an int8 or fp16 file asked for as fp32), the square
        # mode and size a static input forces, its static batch
        stored = self.model.backend.precision
        self.config = replace(config, precision=stored if is_default_precision(config.precision) else config.precision,
                              mode=resolved.mode, batch=resolved.batch,
                              imgsz=resolved.square_size if self.shape_note else config.imgsz,
                              head_branch=self.model.spec.head_branch or config.head_branch)
        self.thresholds = self.predictor.thresholds

    @property
    def spec(self):
        """The configuration's model spec (head format, names, strides)."""
        return self.model.spec

    def close(self) -> None:
        """Free the configuration's model."""
        self.model.close()

    def __enter__(self) -> "ConfigRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, images: list[tuple[str, np.ndarray]]) -> list[ImageStages]:
        """Every stage of each image (digest, tensor, raw output, candidates, kept, detections), the images
            batched by input shape as the configuration's batch size allows."""
        prepared = [self.predictor.prepare(image) for _, image in images]
        raws: list[np.ndarray | None] = [None] * len(images)
        for chunk in shape_batches([lb.input_hw for _, lb in prepared], self.config.batch):
            out = self.model.raw(np.stack([prepared[k][0] for k in chunk]))
            for k, o in zip(chunk, out):
                raws[k] = o
        stages = []
        for (path, image), (tensor, lb), raw in zip(images, prepared, raws):
            cands, kept, dets = postprocess_stages(raw, self.spec.head_format, lb, self.thresholds)
            stages.append(ImageStages(path, hashlib.sha1(image.tobytes()).hexdigest(), tensor, lb, raw, cands, kept, dets))
        return stages
