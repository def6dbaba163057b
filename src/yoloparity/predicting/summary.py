"""What a ``predict`` run into files returns (both engines): :class:`PredictSummary`, typed, with its JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..types import JsonReport


@dataclass(frozen=True)
class PredictSummary(JsonReport):
    """One ``predict_files`` run: how many inputs were done, skipped (unreadable) or failed (inference raised), with
    the reasons; detections per class; the wall time and stage times; what ran (model, backend, device, precision,
    head branch, size and where it came from, the reference command); where the rows went. ``--json`` writes
    :meth:`to_dict`."""
    inputs: int
    images: int
    skipped: int
    failed: int
    errors: tuple[str, ...]  # one line per skipped or failed input, naming the file
    detections: int
    per_class: dict[str, int]  # most frequent first
    wall_s: float
    images_per_s: float | None
    ms_per_image: dict[str, float]
    model: str
    backend: str
    device: str
    precision: str
    computes: dict[str, Any]  # what the runtime computed in, read from it (ComputePrecision.to_dict)
    head_branch: str | None  # the head branch that ran (one2one / one2many), None for a one-head model
    reference: dict[str, Any]
    size: str
    notes: tuple[str, ...]
    processes: int
    engine: str = "torch-distributed"
    workers_are: str = "processes"
    merge_s: float | None = None  # None: no merge step (Ray streams the rows as they come)
    ray_batch_sizes: dict[str, int] | None = None  # Ray: batch size -> how many batches it made
    jsonl: str | None = None
    json: str | None = None
    run_dir: str | None = None  # the shards, when kept
    save_dir: str | None = None
    record: str | None = None  # the run record written (predict --save-record)

    def replace(self, **changes: Any) -> "PredictSummary":
        """A copy with ``changes`` (the CLI adds where it wrote the record and the drawn images)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON values."""
        out = dataclasses.asdict(self)
        out.update(errors=list(self.errors), notes=list(self.notes))
        return out


def run_summary(counts: dict, wall: float, times: dict, about: dict, notes=(), **engine: Any) -> PredictSummary:
    """The summary every engine returns: counts from :func:`~yoloparity.predicting.sharded.add_counts`, the wall
    time, the stage times (``merge_times``), what ran (``about``: :func:`~yoloparity.predicting.sharded.run_about`)
    the notes, and what the engine adds (``engine``: processes, merge time, outputs …)."""
    per_class, done = counts["per_class"], counts["images"]
    return PredictSummary(
        inputs=counts["inputs"], images=done, skipped=len(counts["skipped"]), failed=len(counts["failed"]),
        errors=tuple(counts["skipped"] + counts["failed"]), detections=sum(per_class.values()),
        per_class=dict(sorted(per_class.items(), key=lambda kv: -kv[1])), wall_s=round(wall, 4),
        images_per_s=round(done / wall, 3) if wall else None, ms_per_image=times["ms_per_image"], **about,
        notes=tuple(notes), **engine)

