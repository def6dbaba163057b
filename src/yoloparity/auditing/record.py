"""Run records: a saved run, portable between machines (JSON, plus an .npz beside it for raw outputs).

A record holds the effective configuration (thresholds, batch, shapes as used), the model's spec
and sha256, the environment fingerprint, per image its letterbox and detections (float32 values
round-trip exactly through JSON), optionally the raw head outputs of the first K images, timings
and metrics. ``compare`` runs the audit's own comparison on two records, offline
(:func:`yoloparity.auditing.compare.compare_records`).
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..environment import fingerprint
from ..errors import YoloParityError, read_json_file
from ..io.atomic import atomic_path, write_json
from ..io.detections import from_dict, to_dict
from ..pipeline.postprocess import postprocess_stages
from ..types import (
    DEFAULT_CONF,
    DEFAULT_MAX_DET,
    Detections,
    Letterbox,
    ModelSpec,
    Result,
    Thresholds,
)

FORMAT = "yoloparity.record/1"


class RecordError(YoloParityError):
    """A record file that cannot be read or compared."""


def image_entry(file: str, letterbox: dict | None, boxes: list, scores: list, class_ids: list) -> dict[str, Any]:
    """One image's entry of a run record: its file, letterbox and detections (float32 values, exact in JSON)."""
    return {"file": file, "key": os.path.basename(file), "letterbox": letterbox, "boxes": boxes, "scores": scores,
            "class_ids": class_ids}


def entries_from_results(results: list[Result]) -> tuple[list[dict], list[np.ndarray | None]]:
    """The record entries of predict results, with the raw outputs the predictor kept (None elsewhere)."""
    ok = [r for r in results if r.ok]
    entries = [image_entry(r.path, r.letterbox.to_dict() if r.letterbox else None, **to_dict(r.detections)) for r in ok]
    return entries, [r.raw for r in ok]


def build_record(command: str, spec, model_path: str, backend: dict, settings: dict, images: list[dict],
                 raw_outputs: list[np.ndarray | None], timings: dict, metrics: dict | None = None,
                 ) -> tuple[dict, dict[str, np.ndarray]]:
    """The record dict and the raw outputs to store beside it (keyed by image key): of a run of the model at
    ``model_path`` (its :class:`ModelSpec` ``spec``) on ``backend`` (its name, device and precision)."""

    keys = [e["key"] for e in images]
    if len(set(keys)) != len(keys):
        for e in images:  # same file names in different folders: fall back to the full path
            e["key"] = e["file"]
    raws = {e["key"]: raw for e, raw in zip(images, raw_outputs) if raw is not None}
    spec_dict = json.loads(spec.to_json())
    record = {
        "format": FORMAT,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": model_path, "sha256": spec.sha256, "spec": spec_dict},
        "backend": backend,
        "settings": settings,
        "environment": fingerprint(),
        "images": images,
        "raw_images": sorted(raws),
        "timings": timings,
        "metrics": metrics,
    }
    return record, raws


def save_record(path: str, record: dict, raws: dict[str, np.ndarray]) -> None:
    """Write a run record as JSON, its raw outputs beside it as one ``.npz`` (both atomically)."""
    if raws:  # the raw outputs first: a record on disk always has its .npz
        with atomic_path(path + ".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"raw{i}": raws[k] for i, k in enumerate(record["raw_images"])})
    write_json(path, record)


@dataclass
class Record:
    """A run record read back: settings, environment, spec and per-image entries, for ``compare``."""
    path: str
    data: dict
    raws: dict[str, np.ndarray]

    @property
    def images(self) -> dict[str, dict]:
        """Entries by key (each entry's ``key``, unique within a record)."""
        return {e["key"]: e for e in self.data["images"]}

    def detections(self, key: str) -> Detections:
        """The recorded detections of image ``key``."""
        return from_dict(self.images[key])

    @cached_property
    def spec(self) -> ModelSpec:
        """The spec of the model that made the record."""
        return ModelSpec.from_json(json.dumps(self.data["model"]["spec"]))

    @cached_property
    def thresholds(self) -> Thresholds:
        """The thresholds the run used, as recorded (defaults where an older record has none)."""
        s = self.data["settings"]
        return Thresholds(conf=float(s.get("conf", DEFAULT_CONF)), iou=s.get("iou"), max_det=int(s.get("max_det", DEFAULT_MAX_DET)),
                          multi_label=bool(s.get("multi_label", self.data.get("command") == "val")),
                          agnostic=bool(s.get("agnostic", False)), classes=tuple(s["classes"]) if s.get("classes") else None)

    def stages(self, key: str):
        """One image as the audit's :class:`ImageStages`: letterbox and detections as recorded; where the raw output
        was kept, the candidates and NMS survivors decoded from it with the record's own thresholds."""
        from .capture import ImageStages

        e = self.images[key]
        lb = Letterbox.from_dict(e["letterbox"]) if e.get("letterbox") else None
        if lb is None:
            raise RecordError(self.path, f"image '{key}' has no letterbox entry: the record is incomplete")
        raw = self.raws.get(key)
        cands = kept = None
        if raw is not None:
            spec = self.spec
            cands, kept, _ = postprocess_stages(raw, spec.head_format, lb, self.thresholds)
        return ImageStages(e["file"], e.get("image_sha1"), None, lb, raw, cands, kept, self.detections(key))


def load_record(path: str) -> Record:
    """Read a run record and its raw outputs; a missing or malformed file is a :class:`RecordError` naming it."""
    data = read_json_file(path, "run record", RecordError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecordError(path, f"not a run record (expected format {FORMAT})")
    raws: dict[str, np.ndarray] = {}
    if data.get("raw_images") and os.path.exists(path + ".npz"):
        with np.load(path + ".npz") as z:
            raws = {k: z[f"raw{i}"] for i, k in enumerate(data["raw_images"])}
    return Record(path, data, raws)
